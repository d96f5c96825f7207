"""Read workloads: replay of one big actor as objects, columnar reads, a full log scan."""

import pytest


@pytest.mark.parametrize("system", ["aether_fast", "py-lmdb"])
@pytest.mark.parametrize("workload", ["replay", "columns_actor", "columns_range", "read_all"])
def test_read(bench_read, workload, system):
    bench_read(workload, system)
