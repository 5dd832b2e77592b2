#!/usr/bin/env bash
# runtime = "cuda" on a machine with an NVIDIA GPU (driver 580 or newer for
# CUDA 13), in one go:
#   1. provisions the models and the GPU runtime (`models install --gpu`:
#      ONNX Runtime's CUDA build plus cudart, cuBLAS, cuRAND, NVRTC and
#      cuDNN from their PyPI wheels, pinned by sha256; no system CUDA);
#   2. compares SFace embeddings on the GPU with the CPU provider's (fails
#      above 1e-3) and prints detect + embed faces/s and p50/p99 per photo
#      at 1/4/16/32 concurrent callers (examples/gpu_check.rs);
#   3. per network, ms per face at batch 1-16, and the engine at 1-64
#      concurrent callers with cross-request batching off and on
#      (examples/batch_bench.rs);
#   4. starts `facegate serve` with runtime = "cuda" and runs the HTTP load
#      (register, detect + spoofing, search) at 1/8/32 clients.
# Numbers go to docs/benchmarks.md. Without network, provision on a machine
# that has it and point FACEGATE_MODEL_DIR at a copy of that directory.
#
#   scripts/gpu-check.sh [PHOTO_DIR]    # default ../shared/datasets/lfw_dev/images
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
models="${FACEGATE_MODEL_DIR:-$root/target/test-models}"
mirror="${FACEGATE_MODEL_MIRROR:-$root/../shared/models}"
photos="${1:-$root/../shared/datasets/lfw_dev/images}"
if [ ! -d "$photos" ]; then
  scripts/fetch-test-assets.sh
  photos="$root/target/test-assets"
fi

if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
else
  echo "gpu-check: nvidia-smi not found; the check below says whether a GPU is usable"
fi
cargo build --release --quiet -p facegate --bins --examples
cargo build --release --quiet -p facegate-vision --example gpu_check
mirror_args=()
[ -d "$mirror" ] && mirror_args=(--mirror "$mirror")
target/release/facegate models install --dir "$models" "${mirror_args[@]}" --gpu

echo "== GPU against CPU, detect + embed (SFace)"
target/release/examples/gpu_check --models "$models" --photos "$photos" \
  --parity 100 --count 2000 --threads 1,4,16,32

echo "== per-network batch cost and the engine with batching off / on (GPU)"
cargo build --release --quiet -p facegate-vision --example batch_bench
target/release/examples/batch_bench --models "$models" --runtime cuda \
  --photos "$photos" --count 2000 --sessions 2 --callers 1,8,32,64 --max-batch 32

echo "== facegate serve, runtime = cuda, over HTTP"
target/release/examples/serve_bench --load 10 --clients 1,8,32 --runtime cuda \
  --models "$models" --photos "$photos"
