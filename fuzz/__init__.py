"""Fuzz harnesses: one target per parser that reads what an outsider or an administrator writes.

``python -m fuzz.run TARGET`` runs one target under atheris (libFuzzer) where it is installed,
else under hypothesis; ``make fuzz`` runs them all for a budget and ``tests/fuzz`` runs a short
smoke of each. See ``fuzz/README.md``.
"""
