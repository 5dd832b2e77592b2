#!/usr/bin/env bash
# Validates the server's OpenAPI document (with and without its optional
# routes, /metrics and the console) against the OpenAPI 3.1 schema, with the
# reference validator (openapi-spec-validator, pinned) in a virtual
# environment under target/. The route coverage, ranges and /docs are
# checked by crates/facegate-server/tests/openapi.rs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
venv="$root/target/openapi-venv"
if [ ! -x "$venv/bin/openapi-spec-validator" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "openapi-spec-validator==0.9.0"
fi
for variant in "" --no-metrics --no-console; do
  out="$root/target/openapi${variant:+-${variant#--}}.json"
  cargo run --quiet -p facegate -- openapi $variant > "$out"
  "$venv/bin/openapi-spec-validator" "$out"
done
