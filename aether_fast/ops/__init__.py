"""Operating a store: admin operations (``admin``: info, verify, export, import, backup) and
the ``aether-fast`` command line (``cli``)."""
