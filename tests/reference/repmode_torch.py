"""PyTorch reference of the RepMode network, written from docs/network.md.

This module is the ground truth the C core is tested against. It is deliberately plain: every formula of the
spec appears once, in the order the spec gives it, and nothing is optimized.

    net = RepModeNet(base_channels=32, levels=4, n_tasks=12)      # the official network
    y = net(x, task_ids)                                           # x (N, 1, D, H, W), task_ids (N,) int64

The state_dict has exactly the official tensor names, shapes, dtypes and order (tests/data/repmode-state-dict.txt); the
extensions of docs/network.md §2 (FReLU, Mish, other widths/depths/task counts) only add `<layer>.activation.bias`
tensors where the official code has none. See README.md beside this file for the choices made where the spec
is silent (FReLU placement, eval mode with mixed tasks).

Also here: the multi-branch form of a MoDEConv (5 experts run separately, mixed per output channel), the
re-parameterized, BatchNorm-folded deploy network for one task (DeployNet), and helpers that list the
expected (name, shape, dtype) of a configuration without allocating its weights (state_dict_spec).
"""

import collections
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# The 12 tasks of the official code, in task-index order (docs/network.md §1.1).
OFFICIAL_TASKS = [
    "alpha_tubulin", "beta_actin", "desmoplakin", "dna", "fibrillarin", "lamin_b1",
    "membrane_caax_63x", "myosin_iib", "sec61_beta", "st6gal1", "tom20", "zo1",
]

# Expert order e = 0..4 (docs/network.md §3.2) and their names in a model file's config (docs/model-file.md §2.3).
EXPERTS = ["conv5", "conv3", "conv1", "avg3", "avg5"]
N_EXPERTS = 5
ACTIVATIONS = ("relu", "frelu", "mish")
BN_EPS = 1e-5
BN_MOMENTUM = 0.1


# ---------------------------------------------------------------------------------------------------------------
# Activations

class FReLU(nn.Module):
    """FReLU (docs/network.md §2.5): f(x) = max(x, 0) + bias[c], one learnable bias per channel, initialised to 0."""

    def __init__(self, channels, device=None, dtype=None):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels, device=device, dtype=dtype))

    def forward(self, x):
        return torch.relu(x) + self.bias.view(1, -1, *([1] * (x.dim() - 2)))


class Mish(nn.Module):
    """Mish (docs/network.md §2.5): x * tanh(softplus(x)); softplus computed as max(x,0) + log1p(exp(-|x|))."""

    def forward(self, x):
        softplus = torch.clamp(x, min=0) + torch.log1p(torch.exp(-torch.abs(x)))
        return x * torch.tanh(softplus)


def parameter_free_activation(activation):
    """The activation module for relu/mish (no tensors), or None for frelu (which carries a bias tensor)."""
    if activation == "relu":
        return nn.ReLU()
    if activation == "mish":
        return Mish()
    if activation == "frelu":
        return None
    raise ValueError("unknown activation %r (expected one of %s)" % (activation, ", ".join(ACTIVATIONS)))


# ---------------------------------------------------------------------------------------------------------------
# MoDEConv

# The convolutions, pools and BatchNorm of 3D layers and of the 2D decoder's layers (docs/network.md §7.2).
CONV = {3: F.conv3d, 2: F.conv2d}
AVG_POOL = {3: F.avg_pool3d, 2: F.avg_pool2d}
BATCH_NORM = {3: nn.BatchNorm3d, 2: nn.BatchNorm2d}


class MoDEConv(nn.Module):
    """One Mixture-of-Diverse-Experts convolution ci -> co (docs/network.md §3), 3D or (dims 2) 2D.

    kind "normal": merged 5x5x5 conv -> BatchNorm3d -> activation.  kind "final": merged conv only.

    Tensors, in state_dict order: expert_conv5x5_conv, expert_conv3x3_conv, expert_conv1x1_conv,
    expert_avg3x3_conv, expert_avg5x5_conv (parameters), expert_avg3x3_pool, expert_avg5x5_pool (constant
    buffers 1/27, 1/125), subsequent_layer.0.* (BatchNorm3d, normal only), gate.weight (5*co, T), gate.bias,
    and with FReLU activation.bias (co,) last. In 2D: kernels (co, ci, k, k), pools (K, K) of 1/K², BatchNorm2d.
    """

    def __init__(self, ci, co, n_tasks, kind="normal", activation="relu", device=None, dtype=None, dims=3):
        super().__init__()
        if kind not in ("normal", "final"):
            raise ValueError("kind must be 'normal' or 'final'")
        self.ci, self.co, self.n_tasks, self.kind, self.dims = ci, co, n_tasks, kind, dims
        fk = {"device": device, "dtype": dtype}
        self.expert_conv5x5_conv = nn.Parameter(torch.empty(co, ci, *(5,) * dims, **fk))
        self.expert_conv3x3_conv = nn.Parameter(torch.empty(co, ci, *(3,) * dims, **fk))
        self.expert_conv1x1_conv = nn.Parameter(torch.empty(co, ci, *(1,) * dims, **fk))
        self.expert_avg3x3_conv = nn.Parameter(torch.empty(co, ci, *(1,) * dims, **fk))
        self.expert_avg5x5_conv = nn.Parameter(torch.empty(co, ci, *(1,) * dims, **fk))
        self.register_buffer("expert_avg3x3_pool", torch.full((3,) * dims, 1.0 / 3 ** dims, **fk))
        self.register_buffer("expert_avg5x5_pool", torch.full((5,) * dims, 1.0 / 5 ** dims, **fk))
        bn = BATCH_NORM[dims]
        if kind == "normal":
            act = parameter_free_activation(activation)
            if act is None:   # frelu: the activation (with its bias) is a sibling, see README.md
                self.subsequent_layer = nn.Sequential(bn(co, eps=BN_EPS, momentum=BN_MOMENTUM, **fk))
            else:             # official: Sequential(BatchNorm3d, ReLU)
                self.subsequent_layer = nn.Sequential(bn(co, eps=BN_EPS, momentum=BN_MOMENTUM, **fk), act)
        else:
            self.subsequent_layer = None
        self.gate = nn.Linear(n_tasks, N_EXPERTS * co, **fk)
        if kind == "normal" and activation == "frelu":
            self.activation = FReLU(co, **fk)
        else:
            self.activation = None
        self.reset_parameters()

    def reset_parameters(self):
        # kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)), fan_in = ci * k^3 (§3.1); the gate keeps
        # nn.Linear's own default init.
        for w in self.experts():
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))

    def experts(self):
        return [self.expert_conv5x5_conv, self.expert_conv3x3_conv, self.expert_conv1x1_conv,
                self.expert_avg3x3_conv, self.expert_avg5x5_conv]

    # -- gating (§3.3) --
    def gate_weights(self, task_ids):
        """(N,) int64 task indices -> (N, 5, co): softmax over the 5 experts for every output channel."""
        onehot = F.one_hot(task_ids.long(), self.n_tasks).to(self.gate.weight.dtype)
        logits = self.gate(onehot)                                  # (N, 5*co); logits[e*co + o]
        return torch.softmax(logits.view(-1, N_EXPERTS, self.co), dim=1)

    # -- re-parameterization (§3.4) --
    def padded_experts(self):
        """The 5 expert kernels as 5x5x5 kernels (co, ci, 5, 5, 5): serial merge of the A-convs with their
        average pools, then symmetric zero padding (parallel merge without the gate)."""
        k5 = self.expert_conv5x5_conv
        k3 = F.pad(self.expert_conv3x3_conv, (1, 1) * self.dims)
        k1 = F.pad(self.expert_conv1x1_conv, (2, 2) * self.dims)
        # (co, ci, 1, 1, 1) * (K, K, K) broadcasts to (co, ci, K, K, K): A[o,i] / K^3 over the whole window.
        a3 = F.pad(self.expert_avg3x3_conv * self.expert_avg3x3_pool, (1, 1) * self.dims)
        a5 = self.expert_avg5x5_conv * self.expert_avg5x5_pool
        return [k5, k3, k1, a3, a5]

    def merge(self, g):
        """g (5, co) gate weights of one task -> merged kernel W_t (co, ci, 5, 5, 5)."""
        w = None
        for e, k in enumerate(self.padded_experts()):
            term = g[e].view(-1, *([1] * (self.dims + 1))) * k
            w = term if w is None else w + term
        return w

    def merged_kernel(self, task):
        """The merged 5x5x5 kernel of one task index."""
        t = torch.tensor([task], dtype=torch.long, device=self.gate.weight.device)
        return self.merge(self.gate_weights(t)[0])

    def post(self, y):
        """BatchNorm3d + activation (normal layers); identity for the final layer."""
        if self.subsequent_layer is not None:
            y = self.subsequent_layer(y)
        if self.activation is not None:
            y = self.activation(y)
        return y

    def forward(self, x, task_ids):
        # One merged kernel per sample (its own task), one conv3d per sample, in training and in eval mode.
        # (The official eval mode convolves the whole batch with the first sample's kernel; we do not.)
        g = self.gate_weights(task_ids)
        conv = CONV[self.dims]
        y = torch.cat([conv(x[n:n + 1], self.merge(g[n]), padding=2) for n in range(x.shape[0])], dim=0)
        return self.post(y)  # BatchNorm statistics (train mode) are shared over the mixed-task batch

    def forward_branches(self, x, task_ids):
        """The un-merged form: 5 separate branches mixed per output channel by the gate (§3.4)."""
        g = self.gate_weights(task_ids)
        conv, pool = CONV[self.dims], AVG_POOL[self.dims]
        outs = []
        for n in range(x.shape[0]):
            xn = x[n:n + 1]
            branches = [
                conv(xn, self.expert_conv5x5_conv, padding=2),
                conv(xn, self.expert_conv3x3_conv, padding=1),
                conv(xn, self.expert_conv1x1_conv),
                pool(conv(xn, self.expert_avg3x3_conv), 3, stride=1, padding=1, count_include_pad=True),
                pool(conv(xn, self.expert_avg5x5_conv), 5, stride=1, padding=2, count_include_pad=True),
            ]
            y = None
            for e, b in enumerate(branches):
                term = g[n, e].view(1, -1, *([1] * self.dims)) * b
                y = term if y is None else y + term
            outs.append(y)
        return self.post(torch.cat(outs, dim=0))


# ---------------------------------------------------------------------------------------------------------------
# Blocks

def sampling_block(conv, channels, activation, device=None, dtype=None, dims=3):
    """Down/Up: Sequential(conv, BatchNorm3d, activation). Children are named "0", "1" and "2" (relu/mish, as
    the official nn.Sequential) or "activation" (frelu, whose bias is then `<block>.activation.bias`)."""
    mods = [("0", conv), ("1", BATCH_NORM[dims](channels, eps=BN_EPS, momentum=BN_MOMENTUM,
                                                device=device, dtype=dtype))]
    act = parameter_free_activation(activation)
    if act is None:
        mods.append(("activation", FReLU(channels, device=device, dtype=dtype)))
    else:
        mods.append(("2", act))
    return nn.Sequential(collections.OrderedDict(mods))


def down_block(c, activation, device=None, dtype=None):
    conv = nn.Conv3d(c, c, kernel_size=2, stride=2, padding=0, bias=False, device=device, dtype=dtype)
    return sampling_block(conv, c, activation, device, dtype)


def up_block(ci, co, activation, device=None, dtype=None, dims=3):
    transposed = nn.ConvTranspose3d if dims == 3 else nn.ConvTranspose2d
    conv = transposed(ci, co, kernel_size=2, stride=2, padding=0, bias=False, device=device, dtype=dtype)
    return sampling_block(conv, co, activation, device, dtype, dims)


class SubBlock(nn.Module):
    """Sub2(ci -> co) = MoDE(ci -> co) then MoDE(co -> co), children conv1, conv2 (Inception blocks with
    block "inception")."""

    def __init__(self, ci, co, n_tasks, activation, device=None, dtype=None, dims=3, block="mode"):
        super().__init__()
        if block == "inception":
            self.conv1 = InceptionBlock(ci, co, activation, device, dtype)
            self.conv2 = InceptionBlock(co, co, activation, device, dtype)
            return
        if block == "plain":
            self.conv1 = conv_unit(ci, co, 3, activation, device, dtype)
            self.conv2 = conv_unit(co, co, 3, activation, device, dtype)
            return
        self.conv1 = MoDEConv(ci, co, n_tasks, "normal", activation, device, dtype, dims)
        self.conv2 = MoDEConv(co, co, n_tasks, "normal", activation, device, dtype, dims)

    def forward(self, x, task_ids):
        if isinstance(self.conv1, nn.Sequential):  # a plain layer takes no task
            return self.conv2(self.conv1(x))
        return self.conv2(self.conv1(x, task_ids), task_ids)


class EncoderBlock(nn.Module):
    def __init__(self, ci, co, n_tasks, activation, device=None, dtype=None, block="mode"):
        super().__init__()
        self.conv_more = SubBlock(ci, co, n_tasks, activation, device, dtype, block=block)
        self.conv_down = down_block(co, activation, device, dtype)

    def forward(self, x, task_ids):
        skip = self.conv_more(x, task_ids)
        return skip, self.conv_down(skip)


class DecoderBlock(nn.Module):
    def __init__(self, ci, co, n_tasks, activation, device=None, dtype=None, dims=3, block="mode"):
        super().__init__()
        self.convt = up_block(ci, co, activation, device, dtype, dims)
        self.conv_less = SubBlock(2 * co, co, n_tasks, activation, device, dtype, dims, block)

    def forward(self, x, skip, task_ids):
        up = self.convt(x)
        return self.conv_less(torch.cat([skip, up], dim=1), task_ids)   # skip first, then upsampled


# ---------------------------------------------------------------------------------------------------------------
# The Inception comparison block (docs/network.md §9: I3D's block, single task, no gating)

def conv_unit(ci, co, k, activation, device=None, dtype=None):
    """Conv3d k³ (same padding, no bias) -> BatchNorm3d -> activation, children "conv", "bn", "activation"."""
    act = parameter_free_activation(activation)
    return nn.Sequential(collections.OrderedDict([
        ("conv", nn.Conv3d(ci, co, k, padding=k // 2, bias=False, device=device, dtype=dtype)),
        ("bn", nn.BatchNorm3d(co, eps=BN_EPS, momentum=BN_MOMENTUM, device=device, dtype=dtype)),
        ("activation", FReLU(co, device=device, dtype=dtype) if act is None else act)]))


class InceptionBlock(nn.Module):
    """ci -> co in four parallel branches of co/4 channels each, concatenated in this order: branch0 1³; branch1
    1³ -> 3³; branch2 1³ -> 3³; branch3 3³ max-pool (stride 1, padding 1) -> 1³. The task is ignored."""

    def __init__(self, ci, co, activation, device=None, dtype=None):
        super().__init__()
        if co % 4:
            raise ValueError("an Inception block needs a multiple of 4 channels, not %d" % co)
        c4 = co // 4
        fk = (activation, device, dtype)
        self.branch0 = conv_unit(ci, c4, 1, *fk)
        self.branch1 = nn.Sequential(conv_unit(ci, c4, 1, *fk), conv_unit(c4, c4, 3, *fk))
        self.branch2 = nn.Sequential(conv_unit(ci, c4, 1, *fk), conv_unit(c4, c4, 3, *fk))
        self.branch3 = conv_unit(ci, c4, 1, *fk)

    def forward(self, x, task_ids=None):
        pooled = F.max_pool3d(x, 3, stride=1, padding=1)
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(pooled)], dim=1)


# ---------------------------------------------------------------------------------------------------------------
# The network

class RepModeNet(nn.Module):
    """RepMode 3D U-Net (§2.2). Level k (1..levels) has base*2^(k-1) channels, the bottleneck base*2^levels.

    Children in registration (= state_dict) order: encoder_block1..L, bottle_block, decoder_blockL..1, conv_out.
    Spatial sizes must be divisible by 2^levels.

    decoder "2d" (docs/network.md §7.2): the decoder's blocks and conv_out are 2D (Conv2d-shaped experts,
    ConvTranspose2d, BatchNorm2d); the bottleneck's output and every skip are averaged over depth first, and the
    2D map conv_out makes is repeated over the input's depth, so the output has the input's shape.

    block "inception" (docs/network.md §9): every MoDE layer but the last is an InceptionBlock, conv_out a 1³ Conv3d
    with bias; one task, no gate. block "plain": the same with a conv_unit 3³ (conv, bn, activation) per layer.
    """

    def __init__(self, base_channels, levels, n_tasks, in_channels=1, out_channels=1, activation="relu",
                 device=None, dtype=None, decoder="3d", block="mode"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError("unknown activation %r" % (activation,))
        if base_channels < 1 or levels < 1 or n_tasks < 1 or in_channels < 1 or out_channels < 1:
            raise ValueError("base_channels, levels, n_tasks, in_channels and out_channels must be >= 1")
        self.base_channels, self.levels, self.n_tasks = base_channels, levels, n_tasks
        self.in_channels, self.out_channels, self.activation = in_channels, out_channels, activation
        if decoder not in ("3d", "2d"):
            raise ValueError("unknown decoder %r" % (decoder,))
        self.decoder_dims = 3 if decoder == "3d" else 2
        dd = self.decoder_dims
        if block not in ("mode", "inception", "plain") or (block != "mode" and (decoder != "3d" or n_tasks != 1)):
            raise ValueError("block %r (inception and plain: one task, the 3D decoder)" % (block,))
        self.block = block
        ch = [base_channels * 2 ** k for k in range(levels + 1)]   # ch[k-1] = width of level k, ch[L] = bottleneck
        for k in range(1, levels + 1):
            ci = in_channels if k == 1 else ch[k - 2]
            self.add_module("encoder_block%d" % k,
                            EncoderBlock(ci, ch[k - 1], n_tasks, activation, device, dtype, block))
        self.bottle_block = SubBlock(ch[levels - 1], ch[levels], n_tasks, activation, device, dtype, block=block)
        for k in range(levels, 0, -1):
            self.add_module("decoder_block%d" % k,
                            DecoderBlock(ch[k], ch[k - 1], n_tasks, activation, device, dtype, dd, block))
        if block != "mode":
            self.conv_out = nn.Conv3d(ch[0], out_channels, 1, device=device, dtype=dtype)
        else:
            self.conv_out = MoDEConv(ch[0], out_channels, n_tasks, "final", activation, device, dtype, dd)

    def encoder(self, k):
        return getattr(self, "encoder_block%d" % k)

    def decoder(self, k):
        return getattr(self, "decoder_block%d" % k)

    def mode_layers(self):
        """(path, MoDEConv) for all MoDE layers, in state_dict order."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, MoDEConv)]

    def forward(self, x, task_ids):
        if not torch.is_tensor(task_ids):
            task_ids = torch.tensor(task_ids, dtype=torch.long)
        task_ids = task_ids.to(device=x.device, dtype=torch.long).view(-1)
        if task_ids.numel() != x.shape[0]:
            raise ValueError("need one task index per sample")
        f = 2 ** self.levels
        if any(s % f for s in x.shape[2:]):
            raise ValueError("spatial size %s is not divisible by %d" % (tuple(x.shape[2:]), f))
        depth = x.shape[2]
        flat = (lambda t: t.mean(dim=2)) if self.decoder_dims == 2 else (lambda t: t)
        skips = []
        for k in range(1, self.levels + 1):
            skip, x = self.encoder(k)(x, task_ids)
            skips.append(flat(skip))
        x = flat(self.bottle_block(x, task_ids))
        for k in range(self.levels, 0, -1):
            x = self.decoder(k)(x, skips[k - 1], task_ids)
        y = self.conv_out(x) if self.block != "mode" else self.conv_out(x, task_ids)
        return y if self.decoder_dims == 3 else y.unsqueeze(2).expand(-1, -1, depth, -1, -1)


# ---------------------------------------------------------------------------------------------------------------
# Deploy form: one task, merged kernels, BatchNorm folded (docs/network.md §3.5)

def bn_scale_shift(bn):
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return s, bn.bias - bn.running_mean * s


class DeployConv(nn.Module):
    """A plain conv with bias (`weight`, `bias`) and an optional activation (`activation.bias` for FReLU).
    op: "conv5" (5x5x5, pad 2), "down" (k2 s2 Conv3d) or "up" (k2 s2 ConvTranspose3d, weight (ci, co, 2,2,2))."""

    def __init__(self, op, weight, bias, activation=None, frelu_bias=None):
        super().__init__()
        self.op = op
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone())
        if activation == "frelu":
            self.activation = FReLU(bias.shape[0], device=bias.device, dtype=bias.dtype)
            with torch.no_grad():
                self.activation.bias.copy_(frelu_bias)
        elif activation is None:
            self.activation = None
        else:
            self.activation = parameter_free_activation(activation)

    def forward(self, x):
        planar = self.weight.dim() == 4  # a 2D decoder's layer
        conv = F.conv2d if planar else F.conv3d
        if self.op == "conv5":
            y = conv(x, self.weight, self.bias, padding=2)
        elif self.op == "down":
            y = conv(x, self.weight, self.bias, stride=2)
        else:
            y = (F.conv_transpose2d if planar else F.conv_transpose3d)(x, self.weight, self.bias, stride=2)
        return y if self.activation is None else self.activation(y)


class DeployNet(nn.Module):
    """The RepModeNet for one task as a plain U-Net. Module paths mirror the training form:
    `encoder_block1.conv_more.conv1.{weight,bias}`, `encoder_block1.conv_down.{weight,bias}`,
    `decoder_block1.convt.{weight,bias}`, `conv_out.{weight,bias}` (conv_out's bias is zero), plus
    `<path>.activation.bias` with FReLU. The model file stores them as `deploy.<task>.<name>`."""

    def __init__(self, net, task):
        super().__init__()
        self.levels, self.decoder_dims = net.levels, net.decoder_dims

        def per_out(s, w):  # s as a scale of w's dim 0
            return s.view(-1, *([1] * (w.dim() - 1)))

        act = net.activation
        mods = collections.OrderedDict()
        with torch.no_grad():
            for path, m in net.mode_layers():
                w = m.merged_kernel(task)
                if m.kind == "final":
                    mods[path] = DeployConv("conv5", w, torch.zeros(m.co, dtype=w.dtype, device=w.device))
                    continue
                s, b = bn_scale_shift(m.subsequent_layer[0])
                fb = m.activation.bias if m.activation is not None else None
                mods[path] = DeployConv("conv5", w * per_out(s, w), b, act, fb)
            for k in range(1, net.levels + 1):
                seq = net.encoder(k).conv_down
                s, b = bn_scale_shift(seq[1])
                fb = seq.activation.bias if act == "frelu" else None
                mods["encoder_block%d.conv_down" % k] = DeployConv(
                    "down", seq[0].weight * per_out(s, seq[0].weight), b, act, fb)
                seq = net.decoder(k).convt
                s, b = bn_scale_shift(seq[1])
                fb = seq.activation.bias if act == "frelu" else None
                mods["decoder_block%d.convt" % k] = DeployConv(
                    "up", seq[0].weight * per_out(s, seq[0].weight).transpose(0, 1), b, act, fb)
        self.layers = nn.ModuleDict({p.replace(".", "/"): m for p, m in mods.items()})

    def layer(self, path):
        return self.layers[path.replace(".", "/")]

    def deploy_state_dict(self, prefix=""):
        """name -> tensor with the training-form module paths (and an optional `deploy.<task>.` prefix)."""
        out = collections.OrderedDict()
        for key, t in self.state_dict().items():
            path = key[len("layers."):]
            mod, _, rest = path.partition(".")
            out[prefix + mod.replace("/", ".") + "." + rest] = t
        return out

    def forward(self, x):
        depth = x.shape[2]
        flat = (lambda t: t.mean(dim=2)) if self.decoder_dims == 2 else (lambda t: t)
        skips = []
        for k in range(1, self.levels + 1):
            x = self.layer("encoder_block%d.conv_more.conv1" % k)(x)
            x = self.layer("encoder_block%d.conv_more.conv2" % k)(x)
            skips.append(flat(x))
            x = self.layer("encoder_block%d.conv_down" % k)(x)
        x = self.layer("bottle_block.conv1")(x)
        x = flat(self.layer("bottle_block.conv2")(x))
        for k in range(self.levels, 0, -1):
            up = self.layer("decoder_block%d.convt" % k)(x)
            x = torch.cat([skips[k - 1], up], dim=1)
            x = self.layer("decoder_block%d.conv_less.conv1" % k)(x)
            x = self.layer("decoder_block%d.conv_less.conv2" % k)(x)
        y = self.layer("conv_out")(x)
        return y if self.decoder_dims == 3 else y.unsqueeze(2).expand(-1, -1, depth, -1, -1)


# ---------------------------------------------------------------------------------------------------------------
# Name lists, checks

def model_config(base_channels, levels, in_channels=1, out_channels=1, activation="relu", patch=(32, 128, 128),
                 decoder="3d", block="mode"):
    """The `repmode.config` object of a model file (docs/model-file.md §2.3), keys in this order ("block" only
    for the Inception network)."""
    config = {"base_channels": base_channels, "levels": levels, "in_channels": in_channels,
              "out_channels": out_channels, "experts": list(EXPERTS), "norm": "batch", "activation": activation,
              "dropout": 0, "decoder": decoder, "patch": [int(p) for p in patch]}
    if block != "mode":
        config["block"] = block
    return config


DTYPE_NAMES = {torch.float32: "float32", torch.int64: "int64", torch.float64: "float64"}


def state_dict_spec(base_channels, levels, n_tasks, in_channels=1, out_channels=1, activation="relu", decoder="3d",
                    block="mode"):
    """[(name, shape tuple, dtype name)] of a configuration's state_dict, in order, without allocating the
    weights (the network is built on the meta device)."""
    net = RepModeNet(base_channels, levels, n_tasks, in_channels, out_channels, activation, device="meta",
                     decoder=decoder, block=block)
    return [(k, tuple(v.shape), DTYPE_NAMES[v.dtype]) for k, v in net.state_dict(keep_vars=True).items()]


def trainable_names(base_channels, levels, n_tasks, in_channels=1, out_channels=1, activation="relu", decoder="3d",
                    block="mode"):
    net = RepModeNet(base_channels, levels, n_tasks, in_channels, out_channels, activation, device="meta",
                     decoder=decoder, block=block)
    return [k for k, _ in net.named_parameters()]


def parse_state_dict_listing(text):
    """Parse a listing like tests/data/repmode-state-dict.txt: lines `name (d0, d1, ...) dtype`, `#` comments."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, rest = line.split(" ", 1)
        shape_txt, dtype = rest.rsplit(" ", 1)
        inner = shape_txt.strip()[1:-1]
        shape = tuple(int(s) for s in inner.split(",") if s.strip())
        out.append((name, shape, dtype))
    return out


def check_official_state_dict(listing_path):
    """Compare the base-32, 4-level, 12-task ReLU network with the official listing. Returns a list of
    differences (empty when they agree exactly: names, order, shapes, dtypes)."""
    with open(listing_path) as f:
        want = parse_state_dict_listing(f.read())
    have = state_dict_spec(32, 4, 12)
    problems = []
    if len(want) != len(have):
        problems.append("entry count: official %d, reference %d" % (len(want), len(have)))
    for i, (w, h) in enumerate(zip(want, have)):
        if w != h:
            problems.append("entry %d: official %s, reference %s" % (i, w, h))
    return problems


def self_test(seed=0):
    """Quick self-checks in float64: gate rows sum to 1, merged conv == multi-branch form, eval output of the
    merged form == BatchNorm-folded deploy form. Raises AssertionError on failure."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    m = to_float64(MoDEConv(3, 4, 3, "normal", "relu"))
    randomize_batchnorm(m, g)
    x = torch.randn(2, 3, 7, 6, 5, generator=g, dtype=torch.float64)
    t = torch.tensor([2, 0])
    gw = m.gate_weights(t)
    assert torch.allclose(gw.sum(dim=1), torch.ones_like(gw.sum(dim=1)), atol=1e-12, rtol=0)
    for mode in ("train", "eval"):
        m.train(mode == "train")
        a, b = m(x, t), m.forward_branches(x, t)
        assert torch.allclose(a, b, atol=1e-12, rtol=1e-10), (mode, (a - b).abs().max().item())
    for act in ACTIVATIONS:
        net = to_float64(RepModeNet(2, 2, 3, activation=act))
        randomize_batchnorm(net, g)
        net.eval()
        x = torch.randn(2, 1, 4, 8, 4, generator=g, dtype=torch.float64)
        with torch.no_grad():
            for task in range(3):
                y = net(x, [task, task])
                yd = DeployNet(net, task)(x)
                err = ((y - yd).abs().max() / y.abs().max()).item()
                assert err < 1e-6, (act, task, err)
    return True


def to_float64(module):
    """module.double(), then the average-pool buffers set to the exact float64 1/27 and 1/125 (1/9 and 1/25 in
    2D; .double() alone would keep the float32-rounded constants, a 3e-8 relative error that the float64 fixtures
    must not carry)."""
    module.double()
    with torch.no_grad():
        for mod in module.modules():
            if isinstance(mod, MoDEConv):
                mod.expert_avg3x3_pool.fill_(1.0 / 3 ** mod.dims)
                mod.expert_avg5x5_pool.fill_(1.0 / 5 ** mod.dims)
    return module


def randomize_batchnorm(module, generator, frelu=True):
    """Non-trivial BatchNorm (and FReLU bias) values, in state_dict order: weight U(0.5,1.5), bias U(-0.2,0.2),
    running_mean U(-0.2,0.2), running_var U(0.5,1.5), num_batches_tracked 7; FReLU bias U(-0.2,0.2)."""
    def uniform(t, lo, hi):
        t.copy_(torch.rand(t.shape, generator=generator, dtype=torch.float64).to(t.dtype) * (hi - lo) + lo)

    with torch.no_grad():
        for mod in module.modules():
            if isinstance(mod, (nn.BatchNorm3d, nn.BatchNorm2d)):
                uniform(mod.weight, 0.5, 1.5)
                uniform(mod.bias, -0.2, 0.2)
                uniform(mod.running_mean, -0.2, 0.2)
                uniform(mod.running_var, 0.5, 1.5)
                mod.num_batches_tracked.fill_(7)
            elif isinstance(mod, FReLU) and frelu:
                uniform(mod.bias, -0.2, 0.2)


if __name__ == "__main__":
    import os
    import sys
    here = os.path.dirname(os.path.realpath(__file__))
    listing = os.path.join(here, "..", "data", "repmode-state-dict.txt")  # kept in the repository: required
    diffs = check_official_state_dict(listing)
    if diffs:
        print("\n".join(diffs[:20]))
        sys.exit(1)
    print("official state_dict: %d entries match" % len(state_dict_spec(32, 4, 12)))
    self_test()
    print("self-test passed")
