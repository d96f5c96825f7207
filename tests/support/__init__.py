"""What the tests share: real ``nats-server`` processes and their pytest fixtures
(``nats_server``), a 3-server cluster (``nats_cluster``), cluster-node helpers (``cluster``,
``cluster_node_proc``) and the atheris fuzz harness (``fuzz_atheris``)."""
