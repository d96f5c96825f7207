"""Durable writes: the journal engine against the LMDB engine and sqlite3 (WAL, synchronous=FULL),
interleaved, medians of 3 and the range of the paired ratios. ``N=1000 python bench/durable_engines.py``
(AETHER_BENCH_DIR: where the stores go; a disk, not tmpfs, for the flushes to mean anything)."""
import os
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time

from aether_fast import Event, LmdbEventStore

BASE = tempfile.mkdtemp(prefix="aether-durable-", dir=os.environ.get("AETHER_BENCH_DIR"))
N = int(os.environ.get("N", "1000"))
def events(n, actors=100, size=200):
    return [Event(event_type="T", actor_id=f"a{i % actors}", version=i // actors + 1, data=b"x" * size) for i in range(n)]
def ours_single(engine):
    evs = events(N)
    with LmdbEventStore(tempfile.mkdtemp(dir=BASE), engine=engine) as s:
        t = time.perf_counter()
        for e in evs: s.save_event(e)
        return N / (time.perf_counter() - t)
def sqlite_conn():
    c = sqlite3.connect(os.path.join(tempfile.mkdtemp(dir=BASE), "x.db"), isolation_level=None, check_same_thread=False)
    c.execute("pragma journal_mode=wal"); c.execute("pragma synchronous=full")
    c.execute("create table e(actor text, version int, position integer primary key, data blob, unique(actor, version))")
    return c
def sqlite_single():
    c = sqlite_conn(); t = time.perf_counter()
    for i in range(N):
        c.execute("insert into e(actor, version, data) values(?,?,?)", (f"a{i%100}", i//100+1, b"x"*200))
    return N / (time.perf_counter() - t)
def ours_threads(engine, threads=8):
    evs = events(N * 2, actors=threads * 10)
    parts = [[e for e in evs if int(e.actor_id[1:]) % threads == k] for k in range(threads)]
    with LmdbEventStore(tempfile.mkdtemp(dir=BASE), engine=engine) as s:
        ths = [threading.Thread(target=lambda p=p: [s.save_event(e) for e in p]) for p in parts]
        t = time.perf_counter(); [x.start() for x in ths]; [x.join() for x in ths]
        return len(evs) / (time.perf_counter() - t)
def sqlite_threads(threads=8):
    c = sqlite_conn(); lock = threading.Lock(); n = N * 2
    def run(k):
        for i in range(k, n, threads):
            with lock:
                c.execute("insert into e(actor, version, data) values(?,?,?)", (f"a{i%(threads*10)}", i//(threads*10)+1, b"x"*200))
    ths = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    t = time.perf_counter(); [x.start() for x in ths]; [x.join() for x in ths]
    return n / (time.perf_counter() - t)
def ours_batch(engine, batch=100):
    evs = events(N * 10, actors=N * 10 // batch)
    by = {}
    for e in evs: by.setdefault(e.actor_id, []).append(e)
    with LmdbEventStore(tempfile.mkdtemp(dir=BASE), engine=engine) as s:
        t = time.perf_counter()
        for a, b in by.items(): s.append(a, b)
        return len(evs) / (time.perf_counter() - t)
def sqlite_batch(batch=100):
    c = sqlite_conn(); n = N * 10; t = time.perf_counter()
    for start in range(0, n, batch):
        c.execute("begin immediate")
        c.executemany("insert into e(actor, version, data) values(?,?,?)", [(f"b{start}", v + 1, b"x"*200) for v in range(batch)])
        c.execute("commit")
    return n / (time.perf_counter() - t)
rows = {k: [] for k in ["journal 1t", "lmdb 1t", "sqlite 1t", "journal 8t", "lmdb 8t", "sqlite 8t (shared conn)", "journal batch", "lmdb batch", "sqlite batch"]}
for r in range(3):
    rows["journal 1t"].append(ours_single("journal")); rows["lmdb 1t"].append(ours_single("lmdb")); rows["sqlite 1t"].append(sqlite_single())
    rows["journal 8t"].append(ours_threads("journal")); rows["lmdb 8t"].append(ours_threads("lmdb")); rows["sqlite 8t (shared conn)"].append(sqlite_threads())
    rows["journal batch"].append(ours_batch("journal")); rows["lmdb batch"].append(ours_batch("lmdb")); rows["sqlite batch"].append(sqlite_batch())
med = {k: statistics.median(v) for k, v in rows.items()}
for k, v in med.items(): print(f"{k:28s} {v:10,.0f} ev/s   runs {[round(x) for x in rows[k]]}")
for a, b in [("journal 1t", "sqlite 1t"), ("journal 1t", "lmdb 1t"), ("journal 8t", "sqlite 8t (shared conn)"), ("journal 8t", "journal 1t"), ("journal batch", "sqlite batch"), ("journal batch", "lmdb batch")]:
    ratios = [x / y for x, y in zip(rows[a], rows[b])]
    print(f"{a} / {b}: median {statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f})")
shutil.rmtree(BASE)
