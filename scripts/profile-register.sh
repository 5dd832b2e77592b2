#!/usr/bin/env bash
# Where registration spends its time: starts target/release/facegate on a
# scratch data directory, enrols a folder of photos over HTTP with
# `facegate enroll --jobs N` for each N given, and prints photos/s and the
# server's own per-stage time per photo (from /metrics, the difference
# between a scrape before and after each run). Numbers: docs/benchmarks.md.
#
#   cargo build --release -p facegate
#   scripts/profile-register.sh PHOTO_DIR [JOBS...]      # JOBS default: 1 2 4
#
# RUNTIME=tract selects the other runtime; FACEGATE_MODEL_DIR the models
# (default target/test-models); PORT the listen port (default 18080).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
photos="$(cd "${1:?usage: $0 PHOTO_DIR [JOBS...]}" && pwd)"
shift
if [ $# -gt 0 ]; then jobs_list=("$@"); else jobs_list=(1 2 4); fi
bin="$root/target/release/facegate"
port="${PORT:-18080}"
base="http://127.0.0.1:$port"
work="$(mktemp -d)"
chmod 700 "$work"
cat > "$work/facegate.toml" <<TOML
listen = "127.0.0.1:$port"
data_dir = "$work/data"
model_dir = "${FACEGATE_MODEL_DIR:-$root/target/test-models}"
runtime = "${RUNTIME:-onnxruntime}"
[[tenants]]
app_key = "profile"
face_api_key = "profile-face-key"
liveness_secret_key = "profile-live-key"
argos_api_key = "profile-argos-key"
TOML
"$bin" serve --config "$work/facegate.toml" > "$work/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 240); do
  curl -sf "$base/readyz" >/dev/null && break
  sleep 0.5
done
export FACEGATE_API_KEY=profile-face-key
enroll() {
  "$bin" enroll "$photos" --group "$1" --create-group --server "$base" \
    --app-key profile --jobs "$2" --out "$work/$1.csv" --config "$work/facegate.toml"
}
# A warm-up run loads every detection canvas the photos need.
enroll warm-up 2 > /dev/null 2>&1

scrape() { curl -sf "$base/metrics" > "$1"; }
report() {
  python3 - "$@" <<'PY'
import re, sys
def read(path):
    out = {}
    for line in open(path):
        m = re.match(r'([a-zA-Z_:]+)(\{.*\})?\s+(\S+)$', line.strip())
        if m and not line.startswith('#'):
            out[(m.group(1), m.group(2) or '')] = float(m.group(3))
    return out
before, after = read(sys.argv[1]), read(sys.argv[2])
photos, seconds, jobs = int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
def ms(name, *labels):
    total = sum(v - before.get(k, 0.0) for k, v in after.items()
                if k[0] == name and all(l in k[1] for l in labels))
    return total * 1000.0 / photos
print(f"jobs {jobs}: {photos} photos in {seconds:.2f} s = {photos / seconds:.1f} photos/s")
print("| stage | ms per photo |")
print("| --- | --- |")
rows = [("image decode", ms("facegate_image_decode_duration_seconds_sum")),
        ("decode admission wait", ms("facegate_decode_admission_wait_seconds_sum"))]
rows += [(f"vision: {s}", ms("facegate_analysis_stage_duration_seconds_sum", f'stage="{s}"'))
         for s in ("detect", "landmarks", "embed", "liveness", "mask", "pose")]
rows += [("vision, whole call", ms("facegate_analysis_duration_seconds_sum", 'operation="analyze"')),
         ("store add_faces", ms("facegate_store_operation_duration_seconds_sum", 'operation="add_faces"')),
         ("request, routing to response", ms("facegate_http_request_duration_seconds_sum", 'method="POST"',
                                              'route="/nhn-face-reco/v1.0/appkeys/{app_key}/groups/{group_id}"'))]
for name, value in rows:
    print(f"| {name} | {value:.2f} |")
PY
}
count="$(find "$photos" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) | wc -l)"
for jobs in "${jobs_list[@]}"; do
  scrape "$work/before.prom"
  start=$(date +%s.%N)
  enroll "clients-$jobs" "$jobs" > "$work/enroll.log" 2>&1 || { cat "$work/enroll.log"; exit 1; }
  end=$(date +%s.%N)
  scrape "$work/after.prom"
  report "$work/before.prom" "$work/after.prom" "$count" "$(echo "$end - $start" | bc)" "$jobs"
  tail -n 1 "$work/enroll.log"
done
