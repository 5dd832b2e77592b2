#!/usr/bin/env bash
# The whole test suite, from a fresh clone: fetch the test photos, provision
# the models (from ../shared/models when it is there, else upstream), then run
# every test of the workspace against the real models, and the API suite on
# both storage backends. PostgreSQL must be reachable at
# FACEGATE_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres;
# .ci/run starts one).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

export FACEGATE_TEST_ASSETS="${FACEGATE_TEST_ASSETS:-$root/target/test-assets}"
export FACEGATE_MODEL_DIR="${FACEGATE_MODEL_DIR:-$root/target/test-models}"
mirror="${FACEGATE_MODEL_MIRROR:-$root/../shared/models}"

scripts/fetch-test-assets.sh
mirror_args=()
[ -d "$mirror" ] && mirror_args=(--mirror "$mirror")
cargo run --quiet -p facegate -- models install --dir "$FACEGATE_MODEL_DIR" "${mirror_args[@]}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The API suite once more on PostgreSQL (the first run used SQLite); the
# store suite and the two-node test cover PostgreSQL inside the run above.
FACEGATE_TEST_BACKEND=postgres cargo test -p facegate-server --test contract --test reco_api --test liveness_api --test persistence --test faults --test hardening --test operations --test openapi "$@" 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
# The OpenAPI document against the OpenAPI 3.1 schema.
scripts/check-openapi.sh || status=1
set -e
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
