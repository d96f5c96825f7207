"""Our C and Cython code compiles without warnings under ``-Wall -Wextra``.

The sources are translated afresh (so the check covers the current .pyx/.pxi/.h files, not
a stale csrc/_native.c) and compiled once with ``-Werror``. The same check by hand:

    python -m cython -3 -I csrc -I csrc/include csrc/_native.pyx -o /tmp/_native.c
    gcc -c -fPIC -O1 -Wall -Wextra -Werror -Icsrc/include -I"$(python -c 'import sysconfig; \
print(sysconfig.get_paths()["include"])')" $(pkg-config --cflags lmdb) /tmp/_native.c -o /tmp/_native.o
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lmdb_cflags() -> list[str]:
    if not shutil.which("pkg-config"):
        return []
    out = subprocess.run(["pkg-config", "--cflags", "lmdb"], capture_output=True, text=True, check=False)
    return out.stdout.split() if out.returncode == 0 else []


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler on PATH")
def test_native_code_compiles_without_warnings(tmp_path):
    generated = tmp_path / "_native.c"
    cython = subprocess.run(
        [sys.executable, "-m", "cython", "-3", "-I", "csrc", "-I", "csrc/include", "csrc/_native.pyx", "-o",
         str(generated)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert cython.returncode == 0, cython.stderr
    assert "warning" not in cython.stderr.lower(), cython.stderr
    cc = subprocess.run(
        [os.environ.get("CC", "cc"), "-c", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror",
         f"-I{ROOT / 'csrc' / 'include'}", f"-I{sysconfig.get_paths()['include']}", *_lmdb_cflags(),
         str(generated), "-o", str(tmp_path / "_native.o")],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert cc.returncode == 0, cc.stderr[-5000:]
