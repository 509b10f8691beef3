#!/usr/bin/python3
"""Regenerate the parity fixtures of the C core:  /usr/bin/python3 tests/reference/make_fixtures.py

Writes into tests/fixtures/ (or --out DIR), for each fixture NAME:
  NAME.model.safetensors   the model in training form (official tensor names, state_dict order, metadata)
  NAME.io.safetensors      an input, eval outputs, one gate table, one merged kernel and a mixed-task training
                           step (loss, every parameter gradient, BatchNorm running statistics after the step)
Parameters are drawn and stored in float32; everything derived from them is computed in float64 from exactly
those float32 values and stored as float32. The output is deterministic (same bytes on every run).
See README.md beside this file for the list of entries.
"""

import argparse
import copy
import os
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True   # keep the source tree free of __pycache__ folders

import torch  # noqa: E402

import repmode_safetensors as st  # noqa: E402
import repmode_torch as rt  # noqa: E402

SOFTWARE = "repmode tests/reference/make_fixtures.py"

FIXTURES = [
    {
        "name": "parity_small",
        "seed": 1,
        "base_channels": 4, "levels": 2, "activation": "relu",
        "tasks": [{"name": "dna", "kind": "regression"}, {"name": "membrane", "kind": "regression"},
                  {"name": "ink", "kind": "binary"}],
        "input": (2, 1, 8, 12, 16),
        "eval_tasks": [0, 2],
        "train_tasks": [0, 2],
        "gate": (0, "encoder_block1.conv_more.conv1"),
        "merged": (2, "encoder_block1.conv_more.conv2"),
    },
    {
        "name": "parity_frelu",
        "seed": 2,
        "base_channels": 2, "levels": 1, "activation": "frelu",
        "tasks": [{"name": "a", "kind": "regression"}, {"name": "b", "kind": "binary"}],
        "input": (2, 1, 4, 6, 8),
        "eval_tasks": [0, 1],
        "train_tasks": [0, 1],
        "gate": (0, "encoder_block1.conv_more.conv1"),
        "merged": (1, "encoder_block1.conv_more.conv2"),
    },
    {
        "name": "parity_2d",  # decoder 2d (docs/network.md §7.2): 3D encoder, depth-averaged skips, 2D decoder
        "seed": 3,
        "base_channels": 4, "levels": 2, "activation": "frelu", "decoder": "2d",
        "tasks": [{"name": "ink", "kind": "binary", "output": "2d"},
                  {"name": "sheet", "kind": "regression", "output": "2d"}],
        "input": (2, 1, 8, 12, 16),
        "eval_tasks": [0, 1],
        "train_tasks": [1, 0],
        "gate": (0, "decoder_block1.conv_less.conv1"),
        "merged": (1, "decoder_block2.conv_less.conv2"),
    },
    {
        "name": "parity_inception",  # block inception (docs/network.md §9): one task, no gate, no merged kernel
        "seed": 4,
        "base_channels": 4, "levels": 2, "activation": "frelu", "block": "inception",
        "tasks": [{"name": "dna", "kind": "regression"}],
        "input": (2, 1, 8, 12, 16),
        "eval_tasks": [0],
        "train_tasks": [0, 0],
    },
    {
        "name": "parity_plain",  # block plain: one 3³ conv, BatchNorm and activation per layer, a 1³ output
        "seed": 5,
        "base_channels": 4, "levels": 2, "activation": "mish", "block": "plain",
        "tasks": [{"name": "dna", "kind": "regression"}],
        "input": (2, 1, 8, 12, 16),
        "eval_tasks": [0],
        "train_tasks": [0, 0],
    },
]


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def make(fx):
    """-> (model tensors, model metadata, io tensors, io metadata) of one fixture description."""
    seed = fx["seed"]
    torch.manual_seed(seed)                       # PyTorch default init of experts, gates, Down/Up convs
    gen = torch.Generator().manual_seed(seed)     # BatchNorm/FReLU values, input, target
    n_tasks = len(fx["tasks"])
    decoder, block = fx.get("decoder", "3d"), fx.get("block", "mode")
    net = rt.RepModeNet(fx["base_channels"], fx["levels"], n_tasks, activation=fx["activation"], decoder=decoder,
                        block=block)
    rt.randomize_batchnorm(net, gen)
    x = torch.randn(fx["input"], generator=gen, dtype=torch.float32)
    target = torch.randn(fx["input"], generator=gen, dtype=torch.float32)

    # -- the model file (float32, exactly what the double computations below start from) --
    model_tensors = list(net.state_dict().items())
    config = rt.model_config(fx["base_channels"], fx["levels"], 1, 1, fx["activation"], fx["input"][2:], decoder,
                             block)
    model_meta = st.model_metadata(config, fx["tasks"], {"method": "zscore"},
                                   {"software": SOFTWARE, "seed": seed})

    io = [("input", x)]
    x64 = x.double()

    # -- eval: both samples with the same task, BatchNorm running statistics --
    net64 = rt.to_float64(copy.deepcopy(net)).eval()
    with torch.no_grad():
        for t in fx["eval_tasks"]:
            y = net64(x64, torch.full((x.shape[0],), t, dtype=torch.long))
            io.append(("eval.task%d.output" % t, f32(y)))
        if "gate" in fx:  # MoDE layers only
            t, layer = fx["gate"]
            mod = net64.get_submodule(layer)
            io.append(("gate.task%d.%s" % (t, layer), f32(mod.gate_weights(torch.tensor([t]))[0])))
            t, layer = fx["merged"]
            io.append(("merged.task%d.%s" % (t, layer), f32(net64.get_submodule(layer).merged_kernel(t))))

    # -- one mixed-task training step: train mode, BatchNorm batch statistics, MSE over the whole batch --
    net64 = rt.to_float64(copy.deepcopy(net)).train()
    tasks = torch.tensor(fx["train_tasks"], dtype=torch.long)
    y = net64(x64, tasks)
    loss = ((y - target.double()) ** 2).mean()
    loss.backward()
    io.append(("train.tasks", tasks))
    io.append(("train.target", target))
    io.append(("train.output", f32(y)))
    io.append(("train.loss", f32(loss)))
    # Some gradients are zero in exact arithmetic (an Inception block's output biases and first single-weight
    # convolutions feed batch-statistics BatchNorm only through shift- and scale-invariant paths); float64 leaves
    # them as rounding noise near 1e-17, which moves with the BLAS kernels torch's convolutions call. They are stored
    # as the zeros they are: anything below 1e-12 of the step's largest gradient, far under any real one.
    largest = max(float(p.grad.abs().max()) for p in net64.parameters())
    for name, p in net64.named_parameters():
        g = torch.where(p.grad.abs() <= 1e-12 * largest, torch.zeros_like(p.grad), p.grad)
        io.append(("train.grad." + name, f32(g)))
    for name, b in net64.named_buffers():
        if name.endswith(".running_mean") or name.endswith(".running_var"):
            io.append(("train.after." + name, f32(b)))

    io_meta = {
        "repmode.fixture": st.json_string({
            "model": fx["name"] + ".model.safetensors", "seed": seed, "compute": "float64",
            "eval": "eval mode, every sample with the task in the name",
            "train": "train mode, tasks train.tasks, loss = mean squared error over the batch",
        }),
    }
    return model_tensors, model_meta, io, io_meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "fixtures"),
                    help="output folder (default: tests/fixtures)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)
    for fx in FIXTURES:
        model_tensors, model_meta, io, io_meta = make(fx)
        for suffix, tensors, meta in (("model", model_tensors, model_meta), ("io", io, io_meta)):
            path = os.path.join(args.out, "%s.%s.safetensors" % (fx["name"], suffix))
            st.write(path, tensors, meta)
            print("wrote %s (%d tensors, %d bytes)" % (os.path.normpath(path), len(tensors), os.path.getsize(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
