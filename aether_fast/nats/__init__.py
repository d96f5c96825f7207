"""Everything that talks to NATS (the ``[nats]`` extra): the NATS event bus (``bus``), the
JetStream event store (``jetstream``), cluster coordination (``cluster``) and the
``nats-server`` process helper for tests and benchmarks (``server``)."""
