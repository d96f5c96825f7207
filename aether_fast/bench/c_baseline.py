"""The C baseline of the "near the physical limit" rows: ``c_baseline.c`` (shipped beside
this module) compiled at run time with the system C compiler against the system LMDB, into a
small shared library in a temporary directory, loaded with ctypes.

LMDB is found as setup.py finds it: ``pkg-config lmdb``, or AETHER_LMDB_INCLUDE_DIR /
AETHER_LMDB_LIB_DIR; the compiler is ``$CC`` or ``cc``. When any of that is missing,
``load()`` raises ``_Unavailable`` with the reason, and the rows say "baseline unavailable".
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from functools import cache

import numpy as np

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "c_baseline.c")
FLAGS = ("-O2", "-shared", "-fPIC")
HOW = "c_baseline.c, cc -O2 -shared -fPIC -llmdb at run time, via ctypes"

RAW, CHECK, COLUMNS = 0, 1, 2    # the read modes of cb_read


class _Unavailable(RuntimeError):
    """The C baseline cannot be built here; the message says why."""


def _pkg_config(flag: str) -> list[str]:
    if not shutil.which("pkg-config"):
        return []
    out = subprocess.run(["pkg-config", flag, "lmdb"], capture_output=True, text=True, check=False)
    return out.stdout.split() if out.returncode == 0 else []


def build_command(src: str, out: str) -> list[str]:
    """The compiler command line: ``$CC`` (or cc), the flags, LMDB's include and lib dirs."""
    cc = os.environ.get("CC", "cc")
    inc = [f"-I{d}" for d in filter(None, [os.environ.get("AETHER_LMDB_INCLUDE_DIR")])] + _pkg_config("--cflags")
    lib = [f"-L{d}" for d in filter(None, [os.environ.get("AETHER_LMDB_LIB_DIR")])] + [
        f for f in _pkg_config("--libs") if not f.startswith("-l")]
    rpath = [f"-Wl,-rpath,{f[2:]}" for f in lib if f.startswith("-L")]
    return [cc, *FLAGS, *inc, src, "-o", out, *lib, *rpath, "-llmdb"]


@cache
def load() -> CLib:
    """The compiled baseline (built once per process), or ``_Unavailable``."""
    cmd = build_command(SOURCE, "libaether_cbase.so")
    if not shutil.which(cmd[0]):
        raise _Unavailable(f"no C compiler ({cmd[0]!r} not found; apt-get install gcc)")
    if not os.path.exists(SOURCE):
        raise _Unavailable(f"{SOURCE} is missing from the installed package")
    tmp = tempfile.mkdtemp(prefix="aether-cbase-")
    try:
        out = os.path.join(tmp, "libaether_cbase.so")
        proc = subprocess.run(build_command(SOURCE, out), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines() or ["?"]
            err = next((line for line in lines if "error" in line), lines[0])
            raise _Unavailable(f"compiling c_baseline.c failed ({err}); LMDB headers: apt-get install liblmdb-dev")
        try:
            return CLib(ctypes.CDLL(out), " ".join(cmd))
        except OSError as e:
            raise _Unavailable(f"loading the compiled baseline failed: {e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)   # the loaded library stays mapped


def compiler() -> str:
    """The C compiler's first line of ``--version``, or why there is none."""
    cc = os.environ.get("CC", "cc")
    if not shutil.which(cc):
        return f"none ({cc!r} not found)"
    proc = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False)
    return (proc.stdout.splitlines() or ["?"])[0]


def available() -> str | None:
    """None when the C baseline builds here, else why not."""
    try:
        load()
    except _Unavailable as e:
        return str(e)
    return None


class CLib:
    """The loaded library's functions, with their ctypes signatures."""

    def __init__(self, lib: ctypes.CDLL, command: str) -> None:
        self.lib = lib
        self.command = command
        i64, p = ctypes.c_int64, ctypes.c_void_p
        lib.cb_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_size_t, ctypes.POINTER(p)]
        lib.cb_close.argtypes = [p]
        lib.cb_close.restype = None
        lib.cb_append.argtypes = [p, p, p, i64, p, i64, ctypes.POINTER(i64)]
        lib.cb_read.argtypes = [p, ctypes.c_char_p, ctypes.c_size_t, i64, i64, ctypes.c_int,
                                ctypes.POINTER(i64), ctypes.POINTER(i64), ctypes.POINTER(i64)]
        lib.cb_crc32c.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        lib.cb_crc32c.restype = ctypes.c_uint32
        lib.cb_strerror.restype = ctypes.c_char_p
        lib.cb_lmdb_version.restype = ctypes.c_char_p

    @property
    def lmdb_version(self) -> str:
        """The linked liblmdb's version, e.g. "0.9.24" (from "LMDB 0.9.24: (July 24, 2019)")."""
        return self.lib.cb_lmdb_version().decode().split(":")[0].removeprefix("LMDB ").strip()

    def crc32c(self, data: bytes) -> int:
        return self.lib.cb_crc32c(data, len(data))

    def check(self, rc: int, what: str) -> None:
        if rc:
            raise RuntimeError(f"C baseline {what}: {self.lib.cb_strerror(rc).decode()}")


class CInput:
    """The C baseline's input, pre-built outside the timed regions: each event's id, type,
    actor and data concatenated in one buffer, 7 int64 per event, and the batch starts."""

    def __init__(self, batches: list[list]) -> None:
        parts: list[bytes] = []
        fields: list[int] = []
        starts: list[int] = []
        off = n = 0
        for events in batches:
            starts.append(n)
            for e in events:
                i, t, a, d = e.id.encode(), e.event_type.encode(), e.actor_id.encode(), e.payload
                parts += (i, t, a, d)
                fields += (off, len(i), len(t), len(a), len(d), e.version, e.timestamp_ns)
                off += len(i) + len(t) + len(a) + len(d)
                n += 1
        self.blob = b"".join(parts)
        self.fields = np.array(fields, dtype=np.int64)
        self.starts = np.array(starts, dtype=np.int64)
        self.events = n


class CStore:
    """A store written and read by the C loops (its own directory and LMDB environment)."""

    def __init__(self, path: str, durability: str, map_size: int = 4 << 30) -> None:
        self.c = load()
        handle = ctypes.c_void_p()
        self.c.check(self.c.lib.cb_open(path.encode(), durability == "sync", map_size, ctypes.byref(handle)), "open")
        self.handle = handle

    def close(self) -> None:
        if self.handle:
            self.c.lib.cb_close(self.handle)
            self.handle = None

    def append(self, inp: CInput) -> int:
        """Every batch of ``inp``, one transaction each; the last position written."""
        last = ctypes.c_int64()
        self.c.check(self.c.lib.cb_append(self.handle, inp.blob, inp.fields.ctypes.data, inp.events,
                                          inp.starts.ctypes.data, len(inp.starts), ctypes.byref(last)), "append")
        return last.value

    def read(self, mode: int, actor: str | None = None, start: int = 1, end: int = 2**63 - 1) -> tuple[int, int, int]:
        """``(count, sum of versions (bytes in RAW mode), last position)`` of one read."""
        count, total, last = ctypes.c_int64(), ctypes.c_int64(), ctypes.c_int64()
        a = actor.encode() if actor is not None else None
        self.c.check(self.c.lib.cb_read(self.handle, a, len(a or b""), start, end, mode, ctypes.byref(count),
                                        ctypes.byref(total), ctypes.byref(last)), "read")
        return count.value, total.value, last.value
