"""Builds aether_fast._native only: Cython -> C, linked against the LMDB C library.

LMDB is found with `pkg-config lmdb`, or from AETHER_LMDB_INCLUDE_DIR / AETHER_LMDB_LIB_DIR.
A position-independent static liblmdb.a is linked in when one exists, so that the extension
needs no LMDB at run time; otherwise the shared library is used, unless AETHER_LMDB_STATIC=1
(wheel builds, see wheels/lmdb_static.sh) makes a missing static library an error. Set
AETHER_DEBUG=1 for a debug build, AETHER_SANITIZE=1 for AddressSanitizer + UBSan.
"""

import os
import shutil
import subprocess
import sys
import tempfile

from Cython.Build import cythonize
from setuptools import Extension, setup

INSTALL_HINT = (
    "aether_fast needs the LMDB C library and headers: install them with "
    "'apt-get install liblmdb-dev' (Debian/Ubuntu), 'brew install lmdb' (macOS) or "
    "'conda install lmdb', or set AETHER_LMDB_INCLUDE_DIR and AETHER_LMDB_LIB_DIR"
)


def pkg_config(flag):
    if not shutil.which("pkg-config"):
        return []
    out = subprocess.run(["pkg-config", flag, "lmdb"], capture_output=True, text=True, check=False)
    return out.stdout.split() if out.returncode == 0 else []


def static_lib_links(lib_dirs):
    """The path of a liblmdb.a that can go into a shared object, or None."""
    for d in lib_dirs:
        path = os.path.join(d, "liblmdb.a")
        if not os.path.exists(path):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "t.c")
            with open(src, "w") as f:
                f.write("#include <lmdb.h>\nint t(void){MDB_env*e; return mdb_env_create(&e);}\n")
            cc = os.environ.get("CC", "cc")
            ok = subprocess.run(
                [cc, "-shared", "-fPIC", *[f"-I{i}" for i in include_dirs], src, path, "-lpthread",
                 "-o", os.path.join(tmp, "t.so")], capture_output=True, check=False,
            ).returncode == 0
        if ok:
            return path
    return None


include_dirs = [p[2:] for p in pkg_config("--cflags-only-I")]
lib_dirs = [p[2:] for p in pkg_config("--libs-only-L")]
if os.environ.get("AETHER_LMDB_INCLUDE_DIR"):
    include_dirs.insert(0, os.environ["AETHER_LMDB_INCLUDE_DIR"])
if os.environ.get("AETHER_LMDB_LIB_DIR"):
    lib_dirs.insert(0, os.environ["AETHER_LMDB_LIB_DIR"])
search = include_dirs + ["/usr/include", "/usr/local/include", "/opt/homebrew/include"]
if not any(os.path.exists(os.path.join(d, "lmdb.h")) for d in search):
    sys.exit(INSTALL_HINT)

multiarch = [f"/usr/lib/{t}" for t in ("x86_64-linux-gnu", "aarch64-linux-gnu")]
static = static_lib_links(lib_dirs + multiarch + ["/usr/lib", "/usr/local/lib"])
if not static and os.environ.get("AETHER_LMDB_STATIC"):
    sys.exit(f"AETHER_LMDB_STATIC is set but no position-independent liblmdb.a links from {lib_dirs}; "
             "build one with wheels/lmdb_static.sh DEST and set AETHER_LMDB_LIB_DIR=DEST/lib")
extra_objects, libraries = ([static], []) if static else ([], ["lmdb"])

warnings = ["-Wall", "-Wextra"]    # our code builds without warnings (tests/test_compiler_warnings.py)
compile_args = ["-O3", *warnings]
link_args = []
if os.environ.get("AETHER_DEBUG"):
    compile_args = ["-O0", "-g", *warnings]
if os.environ.get("AETHER_SANITIZE"):
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    compile_args = ["-O1", "-g", *warnings, *san]
    link_args = san

extension = Extension(
    "aether_fast._native",
    sources=["csrc/_native.pyx"],
    include_dirs=["csrc/include", *include_dirs],
    library_dirs=lib_dirs,
    libraries=libraries,
    extra_objects=extra_objects,
    extra_compile_args=compile_args,
    extra_link_args=link_args,
)

setup(ext_modules=cythonize([extension], include_path=["csrc", "csrc/include"], language_level=3))
