"""Write workloads: bulk appends with a version check per batch, and many single saves
in one transaction."""

import pytest


@pytest.mark.parametrize("system", ["aether_fast", "py-lmdb", "sqlite3"])
def test_bulk_append(bench_write, system):
    bench_write("bulk_append", system)


@pytest.mark.parametrize("system", ["aether_fast", "py-lmdb"])
def test_save_event_in_one_transaction(bench_write, system):
    bench_write("save_event", system)
