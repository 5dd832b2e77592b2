#!/usr/bin/env python3
"""Would int8 arithmetic, or more threads, make facegate's networks cheaper?

Issue 13 item 4 asks for int8 or fp16 variants kept only if they are faster
and change embeddings within a documented tolerance. This script measures
the question for SFace, the embedder that is 85 % of registration's vision
time, with ONNX Runtime's own tooling as a quick upper bound before any
converter work in Rust:

1. Static QDQ quantisation (per-channel int8 weights, uint8 activations,
   ONNX Runtime's quantize_static, 64 calibration chips) of the fp32 graph
   that `facegate models install` writes; one-thread latency of both graphs
   and the cosine between their embeddings of the same 200 chips.
2. One-thread against two-thread latency (spinning on and off) of SFace,
   YuNet at 640x640 and MiniFASNetV2: what a lone request gains from
   using both cores (runtime.rs, `lone_run_threads`).

The chips are centre crops of LFW photos (250x250, face centred) resized to
112x112: close to, not exactly, the aligned chips the server feeds; good
enough to measure speed and the embedding drift int8 causes.

Not run in CI. In a throwaway virtual environment:
    python3 -m venv /tmp/int8-venv
    /tmp/int8-venv/bin/pip install onnxruntime==1.31.1 onnx numpy pillow
    /tmp/int8-venv/bin/python tools/sface-int8-trial/sface_int8_trial.py \
        [MODEL_DIR] [LFW_IMAGES]
MODEL_DIR defaults to $FACEGATE_MODEL_DIR or <repo>/target/test-models,
LFW_IMAGES to <repo>/../shared/datasets/lfw_dev/images.
"""

import glob
import os
import random
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat,
                                      QuantType, quantize_static)
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
    "FACEGATE_MODEL_DIR", os.path.join(ROOT, "target", "test-models"))
LFW = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
    ROOT, "..", "shared", "datasets", "lfw_dev", "images")


def chip(path):
    image = Image.open(path).convert("RGB").crop((68, 68, 182, 182)).resize((112, 112))
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1)[None]


def session(path, threads=1, spin=True):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def latency_ms(sess, inputs, runs=100):
    name = sess.get_inputs()[0].name
    for x in inputs[:10]:
        sess.run(None, {name: x})
    started = time.perf_counter()
    for i in range(runs):
        sess.run(None, {name: inputs[i % len(inputs)]})
    return (time.perf_counter() - started) / runs * 1000


def main():
    sface = os.path.join(MODELS, "face_recognition_sface_2021dec.onnx")
    photos = sorted(glob.glob(os.path.join(LFW, "*", "*.jpg")))
    random.seed(1)
    random.shuffle(photos)
    calibration = [chip(p) for p in photos[:64]]
    test = [chip(p) for p in photos[100:300]]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calibration)

        def get_next(self):
            x = next(self.items, None)
            return None if x is None else {"data": x}

    with tempfile.TemporaryDirectory() as tmp:
        int8 = os.path.join(tmp, "sface_qdq.onnx")
        quantize_static(sface, int8, Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        fp32_session, int8_session = session(sface), session(int8)
        print(f"SFace fp32, 1 thread: {latency_ms(fp32_session, test):.1f} ms")
        print(f"SFace int8 QDQ, 1 thread: {latency_ms(int8_session, test):.1f} ms")
        cosines = []
        for x in test:
            a = fp32_session.run(None, {"data": x})[0][0]
            b = int8_session.run(None, {"data": x})[0][0]
            cosines.append(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
        print(f"cosine fp32 vs int8 over {len(test)} chips: "
              f"mean {np.mean(cosines):.4f}, min {min(cosines):.4f}")

    for name, shape in (("face_recognition_sface_2021dec.onnx", (1, 3, 112, 112)),
                        ("face_detection_yunet_2023mar.onnx", (1, 3, 640, 640)),
                        ("minifasnet_v2_2.7.onnx", (1, 3, 80, 80))):
        x = [np.random.default_rng(0).random(shape, dtype=np.float32) * 255]
        path = os.path.join(MODELS, name)
        cells = [f"{threads} thread(s), spinning {'on' if spin else 'off'}: "
                 f"{latency_ms(session(path, threads, spin), x, 60):.1f} ms"
                 for threads, spin in ((1, True), (2, True), (2, False))]
        print(f"{name}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
