# Declarations of our own C helpers (native_util.h: byte order, CRC32C, buffers, interning;
# murmur3.h: the ring's hash) and of the one pthread call the core makes.

from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t

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

cdef extern from "murmur3.h" nogil:
    uint32_t af_murmur3_32(const void *key, size_t len, uint32_t seed)
    ptrdiff_t af_ucs4_to_utf8(const uint32_t *src, size_t n, unsigned char *dst)
