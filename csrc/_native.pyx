# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""aether_fast's native core: the Event type, the record codec and the LMDB log."""

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

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL
    unsigned long PyThread_get_thread_ident()

cdef extern from "native_util.h" nogil:
    ctypedef struct af_buf:
        unsigned char *data
        size_t len
        size_t cap
    ctypedef struct af_intern:
        size_t count
        af_buf bytes
        af_buf offsets
    void af_put_u16le(unsigned char *p, uint16_t v)
    void af_put_u32le(unsigned char *p, uint32_t v)
    void af_put_u64le(unsigned char *p, uint64_t v)
    void af_put_u64be(unsigned char *p, uint64_t v)
    uint16_t af_get_u16le(const unsigned char *p)
    uint32_t af_get_u32le(const unsigned char *p)
    uint64_t af_get_u64le(const unsigned char *p)
    uint64_t af_get_u64be(const unsigned char *p)
    void af_crc32c_init()
    uint32_t af_crc32c(uint32_t crc, const unsigned char *p, size_t n)
    uint32_t af_crc32c_sw(uint32_t crc, const unsigned char *p, size_t n)
    int af_buf_reserve(af_buf *b, size_t extra)
    int af_buf_append(af_buf *b, const void *src, size_t n)
    void af_buf_free(af_buf *b)
    int af_intern_init(af_intern *t)
    void af_intern_free(af_intern *t)
    int64_t af_intern_code(af_intern *t, const unsigned char *p, uint32_t n)
    void af_pool_after_fork()

cdef extern from "<pthread.h>" nogil:
    int pthread_atfork(void (*prepare)(), void (*parent)(), void (*child)())

from aether_fast.errors import (
    AetherError, CorruptRecordError, IncompatibleFormatError, InvalidInputError, InvalidTypeError,
    StorageError, StoreClosedError, StoreForkedError, StoreFullError, VersionConflictError,
)

af_crc32c_init()
pthread_atfork(NULL, NULL, af_pool_after_fork)

include "event.pxi"
include "codec.pxi"
include "log.pxi"
include "match.pxi"
include "bus.pxi"
include "ring.pxi"
