"""The event stores and what serves them: the LMDB store (``lmdb``), the in-memory store
(``memory``), group commit, catch-up subscriptions, the asyncio face (``aio``) and the bus
notices of commits (``notifications``). Import from ``aether_fast`` or the modules here."""
