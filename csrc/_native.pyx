# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""aether_fast's native core, one module: the Event type and record codec (event/), the LMDB
environment and log (store/), the pattern trie and bus delivery (bus/), the hash ring (ring/).
C declarations are alone in include/*.pxd."""

cimport cython
from cpython.buffer cimport PyBUF_FORMAT
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_DecodeASCII, PyUnicode_DecodeUTF8
from libc.errno cimport EDQUOT, EIO, ENOSPC
from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memset
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec
from posix.unistd cimport usleep

from lmdb cimport *
from native_util cimport *

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL
    unsigned long PyThread_get_thread_ident()

from aether_fast.errors import (
    AetherError, CorruptRecordError, IncompatibleFormatError, InvalidInputError, InvalidTypeError,
    StorageError, StoreClosedError, StoreForkedError, StoreFullError, VersionConflictError,
)

af_crc32c_init()
pthread_atfork(NULL, NULL, af_pool_after_fork)

include "event/event.pxi"     # the Event type
include "event/codec.pxi"     # the on-disk record
include "store/journal.pxi"   # the journal engine's segment log
include "store/env.pxi"       # the LMDB environment
include "store/log.pxi"       # a namespace's log: appends, reads, snapshots
include "store/reads.pxi"     # iterators and buffers of the reads
include "bus/match.pxi"       # the NATS-token pattern trie
include "bus/bus.pxi"         # the local bus's delivery core
include "ring/ring.pxi"       # consistent hashing (murmur3)
