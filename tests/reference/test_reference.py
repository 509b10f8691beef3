"""Self-tests of the PyTorch reference (repmode_torch.py), the safetensors module and the fixtures.

Run: /usr/bin/python3 -m pytest -q tests/reference   (ctest runs it as `reference_python`)
"""

import copy
import os
import struct
import sys

import numpy as np
import pytest
import torch

HERE = os.path.dirname(os.path.realpath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import make_fixtures  # noqa: E402
import repmode_safetensors as st  # noqa: E402
import repmode_torch as rt  # noqa: E402


# The official state_dict listing, kept in the repository (docs/model-file.md §3.1).
LISTING = os.path.join(HERE, "..", "data", "repmode-state-dict.txt")


def tiny_mode(seed=0, ci=3, co=4, n_tasks=3, activation="relu", dims=3):
    torch.manual_seed(seed)
    m = rt.to_float64(rt.MoDEConv(ci, co, n_tasks, "normal", activation, dims=dims))
    rt.randomize_batchnorm(m, torch.Generator().manual_seed(seed))
    return m


def tiny_net(activation, seed=0, base=4, levels=2, n_tasks=3, decoder="3d"):
    torch.manual_seed(seed)
    net = rt.to_float64(rt.RepModeNet(base, levels, n_tasks, activation=activation, decoder=decoder))
    rt.randomize_batchnorm(net, torch.Generator().manual_seed(seed + 100))
    return net


# ---------------------------------------------------------------------------------------------------------------
# The official state_dict

def test_official_state_dict_matches_listing():
    path = LISTING
    assert os.path.isfile(path), path + " is missing"
    assert rt.check_official_state_dict(path) == []
    with open(path) as f:
        assert len(rt.parse_state_dict_listing(f.read())) == 309


def test_official_counts():
    spec = rt.state_dict_spec(32, 4, 12)
    params = set(rt.trainable_names(32, 4, 12))
    numel = {n: int(np.prod(s)) if s else 1 for n, s, _ in spec}
    assert len(spec) == 309
    assert sum(v for n, v in numel.items() if n in params) == 123877633
    assert sum(v for n, v in numel.items() if n not in params) == 10722
    assert sum(1 for n in params if n.endswith("expert_conv5x5_conv")) == 19
    assert sum(1 for n, _, _ in spec if n.endswith("running_mean")) == 26


def test_frelu_names():
    names = [n for n, _, _ in rt.state_dict_spec(4, 2, 3, activation="frelu")]
    relu = [n for n, _, _ in rt.state_dict_spec(4, 2, 3)]
    extra = [n for n in names if n not in relu]
    assert [n for n in names if n in relu] == relu           # FReLU only adds names
    assert all(n.endswith(".activation.bias") for n in extra)
    # one per MoDE layer (not conv_out) and per Down/Up block
    assert len(extra) == (2 * 2 + 2 + 2 * 2) + 2 * 2
    for n in ("encoder_block1.conv_more.conv1.activation.bias", "encoder_block1.conv_down.activation.bias",
              "decoder_block1.convt.activation.bias", "bottle_block.conv2.activation.bias"):
        assert n in extra
    i = names.index("encoder_block1.conv_more.conv1.activation.bias")
    assert names[i - 1] == "encoder_block1.conv_more.conv1.gate.bias"
    i = names.index("encoder_block1.conv_down.activation.bias")
    assert names[i - 1] == "encoder_block1.conv_down.1.num_batches_tracked"
    assert not any("subsequent_layer" in n and "activation" in n for n in names)
    assert [n for n, _, _ in rt.state_dict_spec(4, 2, 3, activation="mish")] == relu


# ---------------------------------------------------------------------------------------------------------------
# MoDEConv

def test_gate_sums_to_one_and_is_softmax_of_column():
    m = tiny_mode()
    for t in range(3):
        g = m.gate_weights(torch.tensor([t]))[0]
        assert g.shape == (5, 4)
        assert torch.allclose(g.sum(0), torch.ones(4, dtype=torch.float64), atol=1e-14)
        logits = (m.gate.weight[:, t] + m.gate.bias).view(5, 4)
        assert torch.allclose(g, torch.softmax(logits, dim=0), atol=1e-15)


def test_merge_formula():
    m = tiny_mode()
    t = 1
    g = m.gate_weights(torch.tensor([t]))[0].detach()
    w = m.merged_kernel(t).detach()
    k5, k3, k1 = m.expert_conv5x5_conv.detach(), m.expert_conv3x3_conv.detach(), m.expert_conv1x1_conv.detach()
    a3, a5 = m.expert_avg3x3_conv.detach()[:, :, 0, 0, 0], m.expert_avg5x5_conv.detach()[:, :, 0, 0, 0]
    want = torch.zeros_like(w)
    for o in range(4):
        want[o] += g[0, o] * k5[o]
        want[o, :, 1:4, 1:4, 1:4] += g[1, o] * k3[o]
        want[o, :, 2, 2, 2] += g[2, o] * k1[o, :, 0, 0, 0]
        want[o, :, 1:4, 1:4, 1:4] += (g[3, o] * a3[o] / 27).view(-1, 1, 1, 1)
        want[o] += (g[4, o] * a5[o] / 125).view(-1, 1, 1, 1)
    assert torch.allclose(w, want, atol=1e-15, rtol=1e-13)


@pytest.mark.parametrize("dims", [3, 2])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("activation", rt.ACTIVATIONS)
def test_branch_equivalence(mode, activation, dims):
    m = tiny_mode(activation=activation, dims=dims)
    m.train(mode == "train")
    x = torch.randn(3, 3, *(7, 6, 5)[3 - dims:], dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([2, 0, 2])
    a, b = m(x, t), m.forward_branches(x, t)
    assert torch.allclose(a, b, atol=1e-12, rtol=1e-10), (a - b).abs().max()


def test_2d_decoder_averages_skips_over_depth_and_repeats_its_map():
    """decoder 2d: 2D layers (Conv2d-shaped experts and pools, ConvTranspose2d) where the decoder is, 3D ones in the
    encoder, and an output of the input's shape that is one map repeated over depth."""
    net = tiny_net("relu", decoder="2d").eval()
    names = dict((n, tuple(v.shape)) for n, v in net.state_dict().items())
    assert names["decoder_block1.conv_less.conv1.expert_conv5x5_conv"] == (4, 8, 5, 5)
    assert names["decoder_block1.conv_less.conv1.expert_avg3x3_pool"] == (3, 3)
    assert names["decoder_block2.convt.0.weight"] == (16, 8, 2, 2)
    assert names["encoder_block1.conv_more.conv1.expert_conv5x5_conv"] == (4, 1, 5, 5, 5)
    x = torch.randn(2, 1, 8, 4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = net(x, [0, 2])
    assert y.shape == x.shape
    assert torch.equal(y, y[:, :, :1].expand_as(y))


def test_final_layer_has_no_bn_or_activation():
    torch.manual_seed(0)
    m = rt.to_float64(rt.MoDEConv(3, 1, 2, "final", "frelu"))
    assert [k for k in m.state_dict() if "subsequent" in k or "activation" in k] == []
    x = torch.randn(1, 3, 5, 5, 5, dtype=torch.float64)
    y = torch.nn.functional.conv3d(x, m.merged_kernel(1), padding=2)
    assert torch.equal(m(x, torch.tensor([1])), y)


# ---------------------------------------------------------------------------------------------------------------
# The network

@pytest.mark.parametrize("decoder", ["3d", "2d"])
@pytest.mark.parametrize("activation", rt.ACTIVATIONS)
def test_eval_equals_bn_folded_deploy_net(activation, decoder):
    net = tiny_net(activation, decoder=decoder).eval()
    x = torch.randn(2, 1, 8, 4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for t in range(3):
            y = net(x, [t, t])
            yd = rt.DeployNet(net, t)(x)
            assert (y != 0).double().mean() > 0.5        # not a dead network
            assert ((y - yd).abs().max() / y.abs().max()).item() < 1e-6


def test_deploy_names():
    net = tiny_net("frelu", levels=1)
    names = list(rt.DeployNet(net, 0).deploy_state_dict("deploy.a.").keys())
    assert "deploy.a.encoder_block1.conv_more.conv1.weight" in names
    assert "deploy.a.encoder_block1.conv_more.conv1.activation.bias" in names
    assert "deploy.a.decoder_block1.convt.bias" in names
    assert "deploy.a.conv_out.bias" in names


def test_eval_uses_each_samples_task():
    net = tiny_net("relu").eval()
    x = torch.randn(2, 1, 4, 8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        mixed = net(x, [0, 2])
        assert (mixed != 0).double().mean() > 0.5
        assert torch.allclose(mixed[0:1], net(x[0:1], [0]), rtol=0, atol=1e-15)
        assert torch.allclose(mixed[1:2], net(x[1:2], [2]), rtol=0, atol=1e-15)
        assert not torch.allclose(mixed[1:2], net(x[1:2], [0]))


def test_shapes_and_concat_order():
    net = tiny_net("relu", base=2, levels=2)
    x = torch.randn(1, 1, 8, 8, 8, dtype=torch.float64)
    assert net(x, [0]).shape == (1, 1, 8, 8, 8)
    with pytest.raises(ValueError):
        net(torch.zeros(1, 1, 6, 8, 8, dtype=torch.float64), [0])
    assert net.decoder_block1.conv_less.conv1.ci == 4 and net.decoder_block1.convt[0].weight.shape == (4, 2, 2, 2, 2)


def test_gradient_against_finite_differences():
    net = tiny_net("frelu", base=1, levels=1, n_tasks=2).train()
    x = torch.randn(2, 1, 4, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    target = torch.randn(2, 1, 4, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    tasks = torch.tensor([0, 1])

    def loss_of(n):
        return ((n(x, tasks) - target) ** 2).mean()

    loss_of(net).backward()
    for name, idx in (("encoder_block1.conv_more.conv1.expert_avg5x5_conv", (0, 0, 0, 0, 0)),
                      ("encoder_block1.conv_more.conv2.gate.weight", (3, 1)),
                      ("bottle_block.conv1.activation.bias", (1,)),
                      ("decoder_block1.convt.0.weight", (1, 0, 1, 0, 1))):
        p = dict(net.named_parameters())[name]
        h = 1e-6
        vals = []
        for sgn in (1, -1):
            n2 = copy.deepcopy(net)
            with torch.no_grad():
                dict(n2.named_parameters())[name][idx] += sgn * h
            vals.append(loss_of(n2).item())
        fd = (vals[0] - vals[1]) / (2 * h)
        assert abs(fd - p.grad[idx].item()) <= 1e-6 * max(1.0, abs(fd)), (name, fd, p.grad[idx].item())


def test_self_test():
    assert rt.self_test()


# ---------------------------------------------------------------------------------------------------------------
# safetensors

def test_safetensors_roundtrip_and_layout(tmp_path):
    tensors = [("a", torch.arange(6, dtype=torch.float32).view(2, 3)), ("n", torch.tensor(7)),
               ("s", torch.tensor(1.5)), ("e", torch.zeros(0, 3))]
    meta = {"k": st.json_string({"x": [1, 2]})}
    path = tmp_path / "t.safetensors"
    st.write(str(path), tensors, meta)
    data = path.read_bytes()
    assert data == st.encode(tensors, meta)
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0 and data[8:8 + 16] == b'{"__metadata__":'
    got, m = st.read(str(path))
    assert m == meta and list(got) == ["a", "n", "s", "e"]
    assert got["n"].dtype == np.int64 and got["n"].shape == () and got["n"] == 7
    assert got["s"].shape == () and got["s"] == 1.5
    assert np.array_equal(got["a"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert got["e"].shape == (0, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]


def test_safetensors_reader_rejects_bad_files():
    good = st.encode([("a", torch.ones(4)), ("b", torch.ones(2))], {"k": "v"})
    (n,) = struct.unpack("<Q", good[:8])
    bad = {
        "short": good[:5],
        "length": struct.pack("<Q", 10 ** 9) + good[8:],
        "json": good[:8] + b"[" + good[9:],
        "not-object": good[:8] + b'[1]' + b" " * (n - 3) + good[8 + n:],
        "truncated": good[:-4],
        "trailing": good + b"\0\0\0\0",
        "dtype": good.replace(b'"F32"', b'"X32"', 1),
        "overlap": good.replace(b'[16,24]', b'[8,16]', 1) if b'[16,24]' in good else None,
    }
    for why, data in bad.items():
        if data is None:
            continue
        with pytest.raises(st.SafetensorsError):
            st.decode(data)
    with pytest.raises(TypeError):
        st.encode([("a", torch.ones(2, dtype=torch.float64))])


# ---------------------------------------------------------------------------------------------------------------
# The fixtures

FIXTURE_DIR = os.path.join(REPO, "tests", "fixtures")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("fixtures")
    make_fixtures.main(["--out", str(out)])
    return out


@pytest.mark.parametrize("fx", make_fixtures.FIXTURES, ids=lambda f: f["name"])
def test_fixtures_are_current(fx, regenerated):
    for suffix in ("model", "io"):
        name = "%s.%s.safetensors" % (fx["name"], suffix)
        have, have_meta = st.read(os.path.join(FIXTURE_DIR, name))
        want, want_meta = st.read(os.path.join(str(regenerated), name))
        assert have_meta == want_meta
        assert list(have) == list(want)
        for k in have:
            assert have[k].dtype == want[k].dtype and have[k].shape == want[k].shape, k
            if suffix == "model":
                assert np.array_equal(have[k], want[k]), k
            else:
                scale = max(float(np.abs(want[k]).max()) if want[k].size else 0.0, 1e-30)
                assert float(np.abs(have[k] - want[k]).max()) <= 1e-6 * scale, k


def check_first_layer_statistics(fx, tensors, io):
    """The first MoDE layer's running statistics after the stored step: 0.9 * old + 0.1 * its batch statistics."""
    m = rt.to_float64(rt.MoDEConv(1, fx["base_channels"], len(fx["tasks"]), "normal", fx["activation"]))
    prefix = "encoder_block1.conv_more.conv1."
    m.load_state_dict({k[len(prefix):]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith(prefix)})
    x = torch.from_numpy(io["input"]).double()
    with torch.no_grad():
        pre = torch.cat([torch.nn.functional.conv3d(x[n:n + 1], m.merged_kernel(t), padding=2)
                         for n, t in enumerate(fx["train_tasks"])])
    bn = prefix + "subsequent_layer.0."
    mean = pre.mean(dim=(0, 2, 3, 4)).numpy()
    var = pre.var(dim=(0, 2, 3, 4), unbiased=True).numpy()
    for stat, batch in (("running_mean", mean), ("running_var", var)):
        want = 0.9 * tensors[bn + stat].astype(np.float64) + 0.1 * batch
        assert np.abs(io["train.after." + bn + stat] - want).max() <= 1e-6 * np.abs(want).max()
    assert not np.allclose(io["train.after." + bn + "running_mean"], tensors[bn + "running_mean"])


@pytest.mark.parametrize("fx", make_fixtures.FIXTURES, ids=lambda f: f["name"])
def test_fixture_contents(fx):
    import json
    tensors, meta = st.read(os.path.join(FIXTURE_DIR, fx["name"] + ".model.safetensors"))
    decoder, block = fx.get("decoder", "3d"), fx.get("block", "mode")
    spec = rt.state_dict_spec(fx["base_channels"], fx["levels"], len(fx["tasks"]), activation=fx["activation"],
                              decoder=decoder, block=block)
    assert [(n, tuple(s)) for n, s, _ in spec] == [(k, v.shape) for k, v in tensors.items()]
    assert meta["repmode.format"] == "1" and meta["repmode.form"] == "training"
    cfg = json.loads(meta["repmode.config"])
    want = {"base_channels": fx["base_channels"], "levels": fx["levels"], "in_channels": 1,
            "out_channels": 1, "experts": ["conv5", "conv3", "conv1", "avg3", "avg5"], "norm": "batch",
            "activation": fx["activation"], "dropout": 0, "decoder": decoder, "patch": list(fx["input"][2:])}
    assert cfg == (want if block == "mode" else dict(want, block=block))
    assert json.loads(meta["repmode.tasks"]) == fx["tasks"]
    assert json.loads(meta["repmode.normalization"]) == {"method": "zscore"}
    assert json.loads(meta["repmode.provenance"])["seed"] == fx["seed"]

    io, _ = st.read(os.path.join(FIXTURE_DIR, fx["name"] + ".io.safetensors"))
    params = rt.trainable_names(fx["base_channels"], fx["levels"], len(fx["tasks"]), activation=fx["activation"],
                                decoder=decoder, block=block)
    assert [k[len("train.grad."):] for k in io if k.startswith("train.grad.")] == params
    stats = [n for n, _, _ in spec if n.endswith(".running_mean") or n.endswith(".running_var")]
    assert [k[len("train.after."):] for k in io if k.startswith("train.after.")] == stats
    assert io["train.loss"].shape == () and io["train.tasks"].tolist() == fx["train_tasks"]
    for t in fx["eval_tasks"]:
        assert io["eval.task%d.output" % t].shape == fx["input"]
    # BN running statistics after one step: 0.9 * old + 0.1 * batch statistic (unbiased variance)
    # checked by hand for the first layer, whose input is the stored input (a MoDE layer's)
    if block == "mode":
        check_first_layer_statistics(fx, tensors, io)
    # the stored model, evaluated in float64, reproduces the stored eval outputs
    net = rt.RepModeNet(fx["base_channels"], fx["levels"], len(fx["tasks"]), activation=fx["activation"],
                        decoder=decoder, block=block)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
    net = rt.to_float64(net).eval()
    x = torch.from_numpy(io["input"]).double()
    with torch.no_grad():
        for t in fx["eval_tasks"]:
            y = net(x, [t] * x.shape[0]).float().numpy()
            want = io["eval.task%d.output" % t]
            assert np.abs(y - want).max() <= 1e-6 * np.abs(want).max()
