#!/usr/bin/env python3
"""Independent reference outputs for facegate's MiniFASNet ONNX conversion.

Reads the legacy (pre-1.6, non-zip) PyTorch .pth files with Python's own
`pickle` module (no torch), runs the MiniFASNet forward pass in float64 numpy
with BatchNorm applied *unfolded* (a different path from the Rust converter,
which folds BN into the convolutions), and writes softmax outputs and logits
for three deterministic inputs to
crates/facegate-models/tests/data/minifasnet_reference.json.

Not run in CI. Needs numpy only:
    python3 tools/reference/minifasnet_reference.py [MODEL_DIR]
MODEL_DIR defaults to $FACEGATE_MODEL_DIR or <repo>/target/test-models and
must contain sources/2.7_80x80_MiniFASNetV2.pth and
sources/4_0_0_80x80_MiniFASNetV1SE.pth.
"""

import collections
import json
import os
import pickle
import struct
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(REPO, "crates", "facegate-models", "tests", "data", "minifasnet_reference.json")
MODELS = [
    ("MiniFASNetV2", "2.7_80x80_MiniFASNetV2.pth"),
    ("MiniFASNetV1SE", "4_0_0_80x80_MiniFASNetV1SE.pth"),
]
EPS = 1e-5
SIZE = 80


# ---------------------------------------------------------------- .pth reader
class StorageRef:
    def __init__(self, dtype, key, numel):
        self.dtype, self.key, self.numel = dtype, key, numel


class TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks):
    return TensorRef(storage, offset, tuple(size), tuple(stride))


class TorchUnpickler(pickle.Unpickler):
    """Resolves only the globals a legacy state dict uses."""

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name == "FloatStorage":
            return "<f4"
        if module == "torch" and name == "LongStorage":
            return "<i8"
        raise pickle.UnpicklingError(f"unsupported global {module}.{name}")

    def persistent_load(self, pid):
        tag, dtype, key, _location, numel, _view = pid
        assert tag == "storage"
        return StorageRef(dtype, key, numel)


def load_state_dict(path):
    with open(path, "rb") as f:
        assert pickle.load(f) == 0x1950A86A20F9469CFC6C, "bad magic"
        assert pickle.load(f) == 1001, "bad protocol version"
        sys_info = pickle.load(f)
        assert sys_info["little_endian"]
        refs = TorchUnpickler(f).load()
        keys = pickle.load(f)
        raw = {}
        for key in keys:
            (count,) = struct.unpack("<q", f.read(8))
            dtype = next(t.storage.dtype for t in refs.values() if t.storage.key == key)
            width = np.dtype(dtype).itemsize
            raw[key] = np.frombuffer(f.read(count * width), dtype=dtype)
        assert f.read() == b"", "trailing bytes"
    sd = collections.OrderedDict()
    for name, t in refs.items():
        if name.endswith("num_batches_tracked"):
            continue
        data = raw[t.storage.key]
        n = int(np.prod(t.size)) if t.size else 1
        arr = np.lib.stride_tricks.as_strided(
            data[t.offset:], shape=t.size, strides=[s * data.itemsize for s in t.stride]
        )
        assert arr.size == n
        sd[name.removeprefix("module.")] = np.array(arr, dtype=np.float64)
    return sd


# ---------------------------------------------------------------- forward pass
def conv2d(x, w, stride, pad, groups):
    """x [C,H,W], w [O, C/groups, k, k]; direct sum over kernel taps."""
    c, h, wd = x.shape
    o, cg, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    ho = (h + 2 * pad - k) // stride + 1
    wo = (wd + 2 * pad - k) // stride + 1
    out = np.zeros((o, ho, wo))
    og = o // groups
    for i in range(k):
        for j in range(k):
            patch = xp[:, i:i + stride * ho:stride, j:j + stride * wo:stride]
            for g in range(groups) if groups < c else [None]:
                if g is None:  # depthwise: one input channel per output channel
                    out += patch * w[:, 0, i, j][:, None, None]
                else:
                    out[g * og:(g + 1) * og] += np.einsum(
                        "chw,oc->ohw", patch[g * cg:(g + 1) * cg], w[g * og:(g + 1) * og, :, i, j]
                    )
    return out


def batchnorm(x, sd, p):
    shape = (-1,) + (1,) * (x.ndim - 1)
    mean = sd[p + ".running_mean"].reshape(shape)
    var = sd[p + ".running_var"].reshape(shape)
    return (x - mean) / np.sqrt(var + EPS) * sd[p + ".weight"].reshape(shape) + sd[p + ".bias"].reshape(shape)


def prelu(x, a):
    return np.where(x > 0, x, x * a[:, None, None])


def block(x, sd, p, stride, act, pad=True):
    w = sd[p + ".conv.weight"]
    groups = x.shape[0] if w.shape[1] == 1 and x.shape[0] > 1 else 1
    y = conv2d(x, w, stride, w.shape[2] // 2 if pad else 0, groups)
    y = batchnorm(y, sd, p + ".bn")
    return prelu(y, sd[p + ".prelu.weight"]) if act else y


def dw_block(x, sd, p, stride, residual):
    y = block(x, sd, p + ".conv", 1, True)
    y = block(y, sd, p + ".conv_dw", stride, True)
    y = block(y, sd, p + ".project", 1, False)
    if p + ".se_module.fc1.weight" in sd:
        s = y.mean(axis=(1, 2), keepdims=True)
        s = conv2d(s, sd[p + ".se_module.fc1.weight"], 1, 0, 1)
        s = np.maximum(batchnorm(s, sd, p + ".se_module.bn1"), 0)
        s = conv2d(s, sd[p + ".se_module.fc2.weight"], 1, 0, 1)
        s = 1 / (1 + np.exp(-batchnorm(s, sd, p + ".se_module.bn2")))
        y = y * s
    return x + y if residual else y


def forward(sd, x):
    x = block(x, sd, "conv1", 2, True)
    x = block(x, sd, "conv2_dw", 1, True)
    for down, stage in [("conv_23", "conv_3"), ("conv_34", "conv_4"), ("conv_45", "conv_5")]:
        x = dw_block(x, sd, down, 2, False)
        i = 0
        while f"{stage}.model.{i}.conv.conv.weight" in sd:
            x = dw_block(x, sd, f"{stage}.model.{i}", 1, True)
            i += 1
    x = block(x, sd, "conv_6_sep", 1, True)
    x = block(x, sd, "conv_6_dw", 1, False, pad=False)
    x = x.reshape(-1)
    x = sd["linear.weight"] @ x
    x = batchnorm(x, sd, "bn")
    logits = sd["prob.weight"] @ x
    e = np.exp(logits - logits.max())
    return logits, e / e.sum()


# ---------------------------------------------------------------- inputs
def inputs():
    """Deterministic 80x80 BGR images (channel 0 = B), integer valued 0..255.
    The Rust test rebuilds them with the same integer formulas."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    gradient = np.stack([(x * 255) // 79, (y * 255) // 79, ((x + y) * 255) // 158])
    cell = ((x // 8) + (y // 8)) % 2
    checker = np.stack([np.where(cell == 0, 200, 30) + 10 * c for c in range(3)])
    constant = np.full((3, SIZE, SIZE), 128)
    return {"gradient": gradient, "checkerboard": checker, "constant128": constant}


def main():
    model_dir = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "FACEGATE_MODEL_DIR", os.path.join(REPO, "target", "test-models")
    )
    result = {
        "description": "MiniFASNet reference outputs: numpy float64 forward pass, unfolded BatchNorm, "
        "weights read with Python's pickle (tools/reference/minifasnet_reference.py)",
        "inputs": {
            "gradient": "B=(x*255)//79, G=(y*255)//79, R=((x+y)*255)//158",
            "checkerboard": "8x8 px cells, ((x//8)+(y//8))%2==0 -> 200 else 30, plus 10*channel (B=0,G=1,R=2)",
            "constant128": "every value 128",
        },
        "models": {},
    }
    for variant, file in MODELS:
        sd = load_state_dict(os.path.join(model_dir, "sources", file))
        entry = {
            "file": file,
            "tensors": len(sd),
            "parameters": int(sum(v.size for v in sd.values())),
            "outputs": {},
        }
        for name, img in inputs().items():
            logits, probs = forward(sd, img.astype(np.float64))
            entry["outputs"][name] = {"logits": logits.tolist(), "probs": probs.tolist()}
            print(variant, name, np.round(probs, 6).tolist())
        result["models"][variant] = entry
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
