#!/usr/bin/env bash
# Builds a position-independent static LMDB (liblmdb.a + lmdb.h) into DEST, for wheels whose
# extension must carry LMDB itself.   Usage: wheels/lmdb_static.sh DEST
#
# The LMDB C sources are not kept in this repository: they come from the sdist of py-lmdb
# (PyPI "lmdb"), whose lib/ holds upstream LMDB 0.9.x unmodified (py-lmdb applies its own
# patches at its build time, from separate files that we do not use). The archive is pinned by
# version and sha256. Writes DEST/include/lmdb.h and DEST/lib/liblmdb.a; then point the build
# at them with AETHER_LMDB_INCLUDE_DIR=DEST/include AETHER_LMDB_LIB_DIR=DEST/lib.
# Env: PYTHON (a Python with pip; default: the first of python3, python that has pip), CC
# (default cc), MACOSX_DEPLOYMENT_TARGET (macOS: the archive is universal x86_64 + arm64).
set -euo pipefail

PY_LMDB_VERSION=3.0.0
PY_LMDB_SHA256=06dda0723545e14d56ac7dcd6f582d9922c2ed5e16f1c3f8d0e670a96ec2ee65
LMDB_VERSION=0.9.36   # the upstream version inside that sdist's lib/lmdb.h, checked below

die() { echo "lmdb_static.sh: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 DEST"
dest=$1
if [ -z "${PYTHON:-}" ]; then
  for candidate in python3 python; do
    if "$candidate" -m pip --version >/dev/null 2>&1; then PYTHON=$candidate; break; fi
  done
  [ -n "${PYTHON:-}" ] || die "no python3 or python with pip on PATH; set PYTHON"
fi
CC=${CC:-cc}

if [ -f "$dest/lib/liblmdb.a" ] && [ -f "$dest/include/lmdb.h" ] \
   && grep -q "LMDB $LMDB_VERSION sdist $PY_LMDB_SHA256" "$dest/BUILT_FROM" 2>/dev/null; then
  echo "lmdb_static.sh: $dest already holds LMDB $LMDB_VERSION"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m pip download -q --no-binary :all: --no-deps \
  "lmdb==$PY_LMDB_VERSION" -d "$work" >/dev/null \
  || die "could not download the lmdb==$PY_LMDB_VERSION sdist with $PYTHON -m pip"
archive="$work/lmdb-$PY_LMDB_VERSION.tar.gz"
[ -f "$archive" ] || die "pip did not leave $archive"
got=$("$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$archive")
[ "$got" = "$PY_LMDB_SHA256" ] || die "sha256 mismatch for $archive: got $got, expected $PY_LMDB_SHA256"

src="lmdb-$PY_LMDB_VERSION/lib"
tar -xzf "$archive" -C "$work" "$src/mdb.c" "$src/midl.c" "$src/lmdb.h" "$src/midl.h"
src="$work/$src"
found=$(awk '/#define MDB_VERSION_(MAJOR|MINOR|PATCH)[ \t]/ {v = v (v ? "." : "") $3} END {print v}' "$src/lmdb.h")
[ "$found" = "$LMDB_VERSION" ] || die "the sdist holds LMDB $found, expected $LMDB_VERSION"

cflags=(-O2 -fPIC -fvisibility=hidden -DNDEBUG -pthread)
if [ "$(uname -s)" = Darwin ]; then
  # one universal archive serves every macOS arch cibuildwheel builds
  cflags+=(-arch x86_64 -arch arm64 -mmacosx-version-min="${MACOSX_DEPLOYMENT_TARGET:-10.13}")
fi
mkdir -p "$dest/include" "$dest/lib"
"$CC" "${cflags[@]}" -c "$src/mdb.c" -o "$work/mdb.o"
"$CC" "${cflags[@]}" -c "$src/midl.c" -o "$work/midl.o"
rm -f "$dest/lib/liblmdb.a"
if [ "$(uname -s)" = Darwin ]; then   # ar cannot archive universal objects
  libtool -static -o "$dest/lib/liblmdb.a" "$work/mdb.o" "$work/midl.o"
else
  ar rcs "$dest/lib/liblmdb.a" "$work/mdb.o" "$work/midl.o"
fi
cp "$src/lmdb.h" "$dest/include/lmdb.h"
echo "LMDB $LMDB_VERSION sdist $PY_LMDB_SHA256 (lmdb==$PY_LMDB_VERSION on PyPI)" > "$dest/BUILT_FROM"
echo "lmdb_static.sh: built $dest/lib/liblmdb.a (LMDB $LMDB_VERSION, -fPIC)"
