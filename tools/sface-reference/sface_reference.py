#!/usr/bin/env python3
"""Reference outputs of the ORIGINAL SFace file, for facegate's conversion test.

facegate converts `face_recognition_sface_2021dec_int8bq.onnx` (opset 21,
block-wise int8 DequantizeLinear, stale graph inputs) into a plain fp32 ONNX
at opset 13 with its own Rust code (crates/facegate-models/src/sface.rs).
This script computes what the untouched upstream graph outputs, by a route
that shares no code with that converter: ONNX Runtime (the `onnxruntime`
PyPI package) runs the original file, block-wise dequantisation included.
The only change made to the graph first is the one ONNX Runtime needs to run
it with one input: the graph inputs that have no initializer and that no node
reads (the stale names of the weights before quantisation) are removed.

Writes crates/facegate-models/tests/data/sface_reference.json: the raw `fc1`
output (128 values, before L2 normalisation) for three deterministic
112x112 inputs the Rust test rebuilds from the same integer formulas.

Not run in CI. In a throwaway virtual environment:
    python3 -m venv /tmp/sface-venv
    /tmp/sface-venv/bin/pip install onnx onnxruntime numpy
    /tmp/sface-venv/bin/python tools/sface-reference/sface_reference.py [MODEL_DIR]
MODEL_DIR defaults to $FACEGATE_MODEL_DIR or <repo>/target/test-models and
must contain sources/face_recognition_sface_2021dec_int8bq.onnx (which
`facegate models install` verifies against its pinned sha256).
"""

import hashlib
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(REPO, "crates", "facegate-models", "tests", "data", "sface_reference.json")
SOURCE = "face_recognition_sface_2021dec_int8bq.onnx"
SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
SIZE = 112


def make_input(name):
    """NCHW float32 [1, 3, 112, 112]; the same integer formulas as the Rust test."""
    x = np.zeros((1, 3, SIZE, SIZE), np.float32)
    for c in range(3):
        for r in range(SIZE):
            for col in range(SIZE):
                if name == "gradient":
                    v = [(col * 255) // (SIZE - 1), (r * 255) // (SIZE - 1),
                         ((col + r) * 255) // (2 * (SIZE - 1))][c]
                elif name == "checkerboard":
                    v = (200 if ((col // 8) + (r // 8)) % 2 == 0 else 30) + 10 * c
                elif name == "constant128":
                    v = 128
                else:
                    raise ValueError(name)
                x[0, c, r, col] = v
    return x


def main():
    model_dir = (sys.argv[1] if len(sys.argv) > 1 else
                 os.environ.get("FACEGATE_MODEL_DIR", os.path.join(REPO, "target", "test-models")))
    path = os.path.join(model_dir, "sources", SOURCE)
    data = open(path, "rb").read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        sys.exit(f"{path}: sha256 {digest}, expected {SHA256}")
    model = onnx.load_from_string(data)
    graph = model.graph
    initialized = {t.name for t in graph.initializer}
    read = {name for node in graph.node for name in node.input}
    stale = [i.name for i in graph.input if i.name not in initialized and i.name not in read]
    keep = [i for i in graph.input if i.name not in stale]
    del graph.input[:]
    graph.input.extend(keep)

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    # No graph rewriting: the reference is the graph as written.
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    outputs = {}
    for name in ["gradient", "checkerboard", "constant128"]:
        (fc1,) = session.run(["fc1"], {"data": make_input(name)})
        outputs[name] = [float(v) for v in fc1.reshape(-1)]

    result = {
        "source": SOURCE,
        "source_sha256": SHA256,
        "opset": [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")][0],
        "stale_inputs_removed": stale,
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "input": "data [1,3,112,112] float32 NCHW 0..255",
        "output": "fc1 [1,128], raw (before L2 normalisation)",
        "outputs": outputs,
    }
    with open(OUT, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}: {len(stale)} stale inputs removed, "
          f"ONNX Runtime {onnxruntime.__version__}")


if __name__ == "__main__":
    main()
