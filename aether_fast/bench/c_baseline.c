/* The benchmark's C baseline: the work of aether_fast's store written as plain C loops over
 * liblmdb, with no Python in them. Built by aether_fast/bench/c_baseline.py at run time with
 * the system C compiler (cc -O2 -shared -fPIC ... -llmdb) and loaded with ctypes.
 *
 * Same layout as aether_fast: sub-databases "log" (key: position, u64 big-endian, 1-based,
 * gapless, written with MDB_APPEND; value: the record) and "idx" (key: actor length byte,
 * actor, version u64 big-endian; value: position u64 little-endian). Same record: a 40-byte
 * little-endian header, id | type | actor | data, CRC32C of bytes [4:] first. Same checks:
 * an append reads the actor's latest version (last index key of its prefix) inside its write
 * transaction and refuses a batch that does not follow it; a read checks each record's length,
 * format, checksum and fields before using it.
 *
 * Self-contained on purpose (its own CRC32C and string table): a baseline shares no code with
 * the library it measures. */

#include <lmdb.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HDR 40
#define KEY_MAX 512

/* Growable buffer and string table, for the columns. */
typedef struct { unsigned char *data; size_t len, cap; } buf;
static int buf_add(buf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        unsigned char *d = realloc(b->data, cap);
        if (!d) return -3;
        b->data = d; b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

typedef struct { const unsigned char *p; size_t n; uint32_t code; int used; } slot;
typedef struct { slot *slots; size_t mask, count; int64_t last; } table;

static uint64_t fnv(const unsigned char *p, size_t n) {   /* FNV-1a, 8 bytes a step */
    uint64_t h = 1469598103934665603ull ^ n, w;
    for (; n >= 8; p += 8, n -= 8) { memcpy(&w, p, 8); h = (h ^ w) * 1099511628211ull; h ^= h >> 32; }
    w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 1099511628211ull;
    return h ^ (h >> 29);
}

/* The dense code of a string (its bytes must stay valid: they point into the map). */
static int64_t intern(table *t, const unsigned char *p, size_t n) {
    if (t->last >= 0) {
        slot *l = &t->slots[t->last];
        if (l->n == n && memcmp(l->p, p, n) == 0) return l->code;
    }
    if ((t->count + 1) * 2 > t->mask + 1) {
        size_t nm = t->mask ? t->mask * 2 + 1 : 63;
        slot *ns = calloc(nm + 1, sizeof(slot));
        if (!ns) return -3;
        for (size_t i = 0; t->slots && i <= t->mask; i++) if (t->slots[i].used) {
            size_t j = fnv(t->slots[i].p, t->slots[i].n) & nm;
            while (ns[j].used) j = (j + 1) & nm;
            ns[j] = t->slots[i];
        }
        free(t->slots); t->slots = ns; t->mask = nm; t->last = -1;
    }
    size_t i = fnv(p, n) & t->mask;
    while (t->slots[i].used && !(t->slots[i].n == n && memcmp(t->slots[i].p, p, n) == 0)) i = (i + 1) & t->mask;
    if (!t->slots[i].used) {
        t->slots[i].p = p; t->slots[i].n = n; t->slots[i].code = (uint32_t)t->count++; t->slots[i].used = 1;
    }
    t->last = (int64_t)i;
    return t->slots[i].code;
}

/* Columns as aether_fast's read_columns builds them. */
typedef struct { buf positions, versions, stamps, type_codes, actor_codes, flags, offsets, payload; table types, actors; } columns;

typedef struct {
    MDB_env *env;
    MDB_dbi log, idx;
    columns cols;      /* kept between reads (cleared, not freed), as a reader reusing its buffers */
} cb_store;

static void clear_columns(columns *c, int release);

/* ---- little helpers ------------------------------------------------------------------- */

static void put_be64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[7 - i] = (unsigned char)(v >> (8 * i)); }
static uint64_t get_be64(const unsigned char *p) { uint64_t v = 0; for (int i = 0; i < 8; i++) v = (v << 8) | p[i]; return v; }
static void put_le(unsigned char *p, uint64_t v, int n) { for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint64_t get_le(const unsigned char *p, int n) { uint64_t v = 0; for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i]; return v; }

static uint32_t crc_table[256];
static int crc_hw = -1;

static uint32_t crc32c_sw(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n--) c = (c >> 8) ^ crc_table[(c ^ *p++) & 0xFF];
    return ~c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(const unsigned char *p, size_t n) {
    uint64_t c = 0xFFFFFFFFu;
    while (n >= 8) { uint64_t w; memcpy(&w, p, 8); c = __builtin_ia32_crc32di(c, w); p += 8; n -= 8; }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
static int have_hw(void) { return __builtin_cpu_supports("sse4.2"); }
#else
static uint32_t crc32c_hw(const unsigned char *p, size_t n) { return crc32c_sw(p, n); }
static int have_hw(void) { return 0; }
#endif

static uint32_t crc32c(const unsigned char *p, size_t n) {
    if (crc_hw < 0) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
            crc_table[i] = c;
        }
        crc_hw = have_hw();
    }
    return crc_hw ? crc32c_hw(p, n) : crc32c_sw(p, n);
}

/* CRC32C of a buffer, for the tests (compared with aether_fast._native.crc32c). */
uint32_t cb_crc32c(const unsigned char *p, size_t n) { return crc32c(p, n); }

const char *cb_strerror(int rc) { return rc == -1 ? "version conflict" : rc == -2 ? "corrupt record" : rc == -3 ? "out of memory" : mdb_strerror(rc); }
const char *cb_lmdb_version(void) { return mdb_version(NULL, NULL, NULL); }

/* ---- the store --------------------------------------------------------------------------- */

int cb_open(const char *path, int durable, size_t map_size, cb_store **out) {
    cb_store *s = calloc(1, sizeof(cb_store));
    MDB_txn *txn;
    int rc;
    if (!s) return -3;
    if ((rc = mdb_env_create(&s->env))) { free(s); return rc; }
    mdb_env_set_mapsize(s->env, map_size);
    mdb_env_set_maxdbs(s->env, 4);
    rc = mdb_env_open(s->env, path, durable ? 0 : MDB_NOSYNC, 0644);
    if (!rc) rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (!rc) {
        rc = mdb_dbi_open(txn, "log", MDB_CREATE, &s->log);
        if (!rc) rc = mdb_dbi_open(txn, "idx", MDB_CREATE, &s->idx);
        rc = rc ? (mdb_txn_abort(txn), rc) : mdb_txn_commit(txn);
    }
    if (rc) { mdb_env_close(s->env); free(s); return rc; }
    *out = s;
    return 0;
}

void cb_close(cb_store *s) { clear_columns(&s->cols, 1); mdb_env_close(s->env); free(s); }

static size_t actor_key(unsigned char *key, const unsigned char *actor, size_t n, uint64_t version) {
    key[0] = (unsigned char)n;
    memcpy(key + 1, actor, n);
    put_be64(key + 1 + n, version);
    return n + 9;
}

/* The actor's latest version: the last index key under its prefix, 0 if none. */
static int latest_version(MDB_cursor *idx, const unsigned char *actor, size_t n, int64_t *latest) {
    unsigned char key[KEY_MAX];
    MDB_val k, v;
    k.mv_size = actor_key(key, actor, n, UINT64_MAX);
    k.mv_data = key;
    int rc = mdb_cursor_get(idx, &k, &v, MDB_SET_RANGE);
    rc = rc == MDB_NOTFOUND ? mdb_cursor_get(idx, &k, &v, MDB_LAST) : rc ? rc : mdb_cursor_get(idx, &k, &v, MDB_PREV);
    *latest = 0;
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return rc;
    if (k.mv_size == n + 9 && memcmp(k.mv_data, key, n + 1) == 0)
        *latest = (int64_t)get_be64((const unsigned char *)k.mv_data + 1 + n);
    return 0;
}

/* Append ``n_events`` events in ``n_batches`` batches (one actor's events each, one write
 * transaction each, version check inside). The input, pre-built: ``blob`` holds each event's
 * id | type | actor | data; ``ev`` holds 7 int64 per event: offset in blob, id length, type
 * length, actor length, data length, version, timestamp; ``batch_start`` the first event of
 * each batch. ``last_position``: the position of the last event written. */
int cb_append(cb_store *s, const unsigned char *blob, const int64_t *ev, int64_t n_events,
              const int64_t *batch_start, int64_t n_batches, int64_t *last_position) {
    unsigned char key[KEY_MAX], pk[8], posbuf[8];
    MDB_val k, v;
    for (int64_t b = 0; b < n_batches; b++) {
        int64_t first = batch_start[b], end = b + 1 < n_batches ? batch_start[b + 1] : n_events;
        const int64_t *e0 = ev + 7 * first;
        const unsigned char *actor = blob + e0[0] + e0[1] + e0[2];
        size_t actor_n = (size_t)e0[3];
        MDB_txn *txn;
        MDB_cursor *log, *idx;
        int64_t latest, pos = 0;
        int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
        if (rc) return rc;
        rc = mdb_cursor_open(txn, s->idx, &idx);
        if (!rc) rc = mdb_cursor_open(txn, s->log, &log);
        if (!rc) rc = latest_version(idx, actor, actor_n, &latest);
        if (!rc && e0[5] <= latest) rc = -1;
        if (!rc) {
            rc = mdb_cursor_get(log, &k, &v, MDB_LAST);
            if (rc == 0) pos = (int64_t)get_be64(k.mv_data);
            else if (rc == MDB_NOTFOUND) rc = 0;
        }
        for (int64_t i = first; !rc && i < end; i++) {
            const int64_t *e = ev + 7 * i;
            size_t total = HDR + (size_t)(e[1] + e[2] + e[3] + e[4]);
            if (i > first && e[5] <= e[-2]) { rc = -1; break; }   /* versions increase in a batch */
            put_be64(pk, (uint64_t)++pos);
            k.mv_data = pk; k.mv_size = 8;
            v.mv_size = total;
            if ((rc = mdb_cursor_put(log, &k, &v, MDB_APPEND | MDB_RESERVE))) break;
            unsigned char *r = v.mv_data;
            r[4] = 1; r[5] = 1;                                   /* format 1, raw bytes data */
            put_le(r + 6, (uint64_t)e[2], 2);
            put_le(r + 8, (uint64_t)e[5], 8);
            put_le(r + 16, (uint64_t)e[6], 8);
            put_le(r + 24, (uint64_t)e[1], 2);
            put_le(r + 26, (uint64_t)e[3], 2);
            put_le(r + 28, 0, 2); put_le(r + 30, 0, 2); put_le(r + 32, 0, 4);
            put_le(r + 36, (uint64_t)e[4], 4);
            memcpy(r + HDR, blob + e[0], total - HDR);
            put_le(r, crc32c(r + 4, total - 4), 4);
            k.mv_size = actor_key(key, actor, actor_n, (uint64_t)e[5]);
            k.mv_data = key;
            put_le(posbuf, (uint64_t)pos, 8);
            v.mv_data = posbuf; v.mv_size = 8;
            rc = mdb_cursor_put(idx, &k, &v, 0);
        }
        if (rc) { mdb_txn_abort(txn); return rc; }
        if ((rc = mdb_txn_commit(txn))) return rc;
        *last_position = pos;
    }
    return 0;
}

/* ---- reads ------------------------------------------------------------------------------- */

/* 0 when the record is whole, its checksum holds and its fields are those of an event. */
static int rec_ok(const unsigned char *p, size_t n) {
    if (n < HDR || p[4] != 1 || (p[5] & ~3)) return 0;
    size_t want = HDR + get_le(p + 6, 2) + get_le(p + 24, 2) + get_le(p + 26, 2) + get_le(p + 28, 2)
                  + get_le(p + 32, 4) + get_le(p + 36, 4);
    if (want != n || crc32c(p + 4, n - 4) != (uint32_t)get_le(p, 4)) return 0;
    return (int64_t)get_le(p + 8, 8) >= 1 && get_le(p + 30, 2) == 0 && get_le(p + 6, 2) >= 1
           && get_le(p + 24, 2) >= 1 && get_le(p + 26, 2) >= 1 && ((p[5] & 2) != 0) == (get_le(p + 28, 2) != 0);
}

/* An event decoded in place: its fields point into the map (valid while the read lasts). */
typedef struct {
    int64_t position, version, timestamp;
    const unsigned char *id, *type, *actor, *data;
    size_t id_n, type_n, actor_n, data_n;
} cb_event;

static void decode(const unsigned char *p, size_t n, int64_t position, cb_event *e) {
    e->position = position;
    e->version = (int64_t)get_le(p + 8, 8);
    e->timestamp = (int64_t)get_le(p + 16, 8);
    e->id_n = get_le(p + 24, 2); e->type_n = get_le(p + 6, 2); e->actor_n = get_le(p + 26, 2);
    e->data_n = get_le(p + 36, 4);
    e->id = p + HDR; e->type = e->id + e->id_n; e->actor = e->type + e->type_n;
    e->data = p + n - e->data_n;
}

static int add_columns(columns *c, const unsigned char *p, size_t n, int64_t position) {
    cb_event e;
    decode(p, n, position, &e);
    int64_t t = intern(&c->types, e.type, e.type_n), a = intern(&c->actors, e.actor, e.actor_n);
    if (t < 0 || a < 0) return -3;
    uint32_t t32 = (uint32_t)t, a32 = (uint32_t)a;
    unsigned char fl = p[5] & 1;
    int rc = buf_add(&c->positions, &position, 8) | buf_add(&c->versions, &e.version, 8)
             | buf_add(&c->stamps, &e.timestamp, 8) | buf_add(&c->type_codes, &t32, 4)
             | buf_add(&c->actor_codes, &a32, 4) | buf_add(&c->flags, &fl, 1)
             | buf_add(&c->payload, e.data, e.data_n);
    uint64_t off = c->payload.len;
    return rc | buf_add(&c->offsets, &off, 8);
}

/* Empty the columns for the next read (their memory kept), or free them (``release``). */
static void clear_columns(columns *c, int release) {
    buf *b[] = {&c->positions, &c->versions, &c->stamps, &c->type_codes, &c->actor_codes, &c->flags, &c->offsets, &c->payload};
    table *t[] = {&c->types, &c->actors};
    for (int i = 0; i < 8; i++) {
        b[i]->len = 0;
        if (release) { free(b[i]->data); b[i]->data = NULL; b[i]->cap = 0; }
    }
    for (int i = 0; i < 2; i++) {
        if (t[i]->slots) memset(t[i]->slots, 0, (t[i]->mask + 1) * sizeof(slot));
        if (release) { free(t[i]->slots); t[i]->slots = NULL; t[i]->mask = 0; }
        t[i]->count = 0;
        t[i]->last = -1;
    }
}

/* Room for ``rows`` more rows (the payload sized by ``data_n`` each), before a range read. */
static int reserve_columns(columns *c, int64_t rows, size_t data_n) {
    buf *b[] = {&c->positions, &c->versions, &c->stamps, &c->type_codes, &c->actor_codes, &c->flags, &c->offsets, &c->payload};
    size_t width[] = {8, 8, 8, 4, 4, 1, 8, data_n};
    for (int i = 0; i < 8; i++) {
        size_t need = b[i]->len + (size_t)rows * width[i];
        if (need > b[i]->cap) {
            unsigned char *d = realloc(b[i]->data, need);
            if (!d) return -3;
            b[i]->data = d; b[i]->cap = need;
        }
    }
    return 0;
}

/* Read events in one read transaction: the log from position ``from`` to ``to`` (``actor``
 * NULL), or one actor's events through its index entries. ``mode`` 0: walk the cursor only
 * (no check, no decode: the floor); 1: check each record and decode it in place; 2: check it
 * and append it to columns (as read_columns). Out: the count, the sum of the versions (mode 0:
 * of the record sizes) and the last position read (for the tests, and so that nothing is
 * optimised away). */
int cb_read(cb_store *s, const unsigned char *actor, size_t actor_n, int64_t from, int64_t to, int mode,
            int64_t *count, int64_t *version_sum, int64_t *last_position) {
    MDB_txn *txn;
    MDB_cursor *log = NULL, *idx = NULL;
    MDB_val k, v, lk, lv;
    unsigned char key[KEY_MAX], pk[8];
    columns *cols = &s->cols;
    cb_event e;
    int64_t n = 0, sum = 0, pos = 0, prev = -1, last = 0;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc) return rc;
    uint64_t zero = 0;
    clear_columns(cols, 0);
    if (mode == 2 && buf_add(&cols->offsets, &zero, 8)) rc = -3;
    if (!rc) rc = mdb_cursor_open(txn, s->log, &log);
    if (!rc && mode == 2 && !actor && mdb_cursor_get(log, &lk, &lv, MDB_LAST) == 0) {
        int64_t rows = (int64_t)get_be64(lk.mv_data);      /* the row count is known: size the columns once */
        rows = (rows < to ? rows : to) - from + 1;
        if (rows > 0 && reserve_columns(cols, rows, lv.mv_size > HDR ? get_le((const unsigned char *)lv.mv_data + 36, 4) : 0))
            rc = -3;
    }
    if (!rc && actor) rc = mdb_cursor_open(txn, s->idx, &idx);
    if (!rc && actor) {
        k.mv_size = actor_key(key, actor, actor_n, 1);
        k.mv_data = key;
        rc = mdb_cursor_get(idx, &k, &v, MDB_SET_RANGE);
    } else if (!rc) {
        put_be64(pk, (uint64_t)from);
        k.mv_data = pk; k.mv_size = 8;
        rc = mdb_cursor_get(log, &k, &v, MDB_SET_RANGE);
    }
    while (rc == 0) {
        if (actor) {
            if (k.mv_size != actor_n + 9 || memcmp(k.mv_data, key, actor_n + 1) != 0) break;
            if (v.mv_size != 8) { rc = -2; break; }
            pos = (int64_t)get_le(v.mv_data, 8);
            rc = -1;
            if (pos == prev + 1) {            /* consecutive positions: step instead of seeking */
                rc = mdb_cursor_get(log, &lk, &lv, MDB_NEXT);
                if (rc == 0 && (int64_t)get_be64(lk.mv_data) != pos) rc = -1;
            }
            if (rc) {
                put_be64(pk, (uint64_t)pos);
                lk.mv_data = pk; lk.mv_size = 8;
                if ((rc = mdb_cursor_get(log, &lk, &lv, MDB_SET_KEY))) { rc = rc == MDB_NOTFOUND ? -2 : rc; break; }
            }
            prev = pos;
        } else {
            pos = (int64_t)get_be64(k.mv_data);
            if (pos > to) break;
            lv = v;
        }
        const unsigned char *p = lv.mv_data;
        if (mode == 0) {
            sum += (int64_t)lv.mv_size;
        } else if (!rec_ok(p, lv.mv_size)) {
            rc = -2;
            break;
        } else if (mode == 1) {
            decode(p, lv.mv_size, pos, &e);
            sum += e.version;
        } else {
            if ((rc = add_columns(cols, p, lv.mv_size, pos))) break;
            sum += (int64_t)get_le(p + 8, 8);
        }
        n++;
        last = pos;
        rc = mdb_cursor_get(actor ? idx : log, &k, &v, MDB_NEXT);
    }
    if (rc == MDB_NOTFOUND) rc = 0;
    if (log) mdb_cursor_close(log);
    if (idx) mdb_cursor_close(idx);
    mdb_txn_abort(txn);
    *count = n;
    *version_sum = sum;
    *last_position = last;
    return rc;
}
