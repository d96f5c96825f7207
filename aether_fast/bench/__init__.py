"""The benchmark suites behind ``python -m aether_fast bench``: ``common`` (what they share),
``runner`` (runs and prints them) and one module per suite."""
