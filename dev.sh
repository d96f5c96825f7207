#!/usr/bin/env bash
# One command to set up and run:  ./dev.sh bench [ARGS]   |   ./dev.sh test [PYTEST ARGS]
# Sets up everything it needs (LMDB headers, a project virtualenv in .venv, the package
# built in place with its test extras), then runs the benchmark or the tests.
set -euo pipefail
cd "$(dirname "$0")"

die() { echo "dev.sh: $*" >&2; exit 1; }

need_apt=()
lmdb_found() {
  pkg-config --exists lmdb 2>/dev/null && return 0
  for d in ${AETHER_LMDB_INCLUDE_DIR:-} /usr/include /usr/local/include /opt/homebrew/include; do
    [ -n "$d" ] && [ -f "$d/lmdb.h" ] && return 0
  done
  return 1
}
lmdb_found || need_apt+=(liblmdb-dev)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v cc >/dev/null || need_apt+=(gcc)
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || need_apt+=(python3)
if [ ! -x .venv/bin/python ] && ! "$PY" -c "import ensurepip, venv" 2>/dev/null; then
  need_apt+=(python3-venv)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "dev.sh: installing ${need_apt[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  elif command -v apt-get >/dev/null; then
    die "missing system packages; run: sudo apt-get install -y ${need_apt[*]}"
  else
    die "missing: ${need_apt[*]} (macOS: brew install lmdb pkg-config; conda: conda install lmdb)"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv || die "could not create the virtualenv .venv"
fi
VPY=.venv/bin/python
stamp=.venv/.aether_fast_installed
if [ ! -f "$stamp" ] || [ -n "$(find pyproject.toml setup.py csrc aether_fast -newer "$stamp" \
      \( -name '*.py' -o -name '*.pyx' -o -name '*.pxi' -o -name '*.pxd' -o -name '*.h' -o -name '*.toml' \) \
      -print -quit)" ]; then
  echo "dev.sh: installing aether_fast into .venv (build of the native core)"
  "$VPY" -m pip install -q --upgrade pip
  "$VPY" -m pip install -q "setuptools>=77" wheel "Cython>=3.0" numpy
  "$VPY" -m pip install -q --no-build-isolation -e ".[test]"
  touch "$stamp"
fi

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  bench) exec "$VPY" -m aether_fast bench "$@" ;;
  test) exec "$VPY" -m pytest "$@" ;;
  *) die "usage: ./dev.sh bench [--quick] [--json FILE]  |  ./dev.sh test [pytest args]" ;;
esac
