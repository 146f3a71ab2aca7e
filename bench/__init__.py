"""Benchmarks of the mirror (python -m bench.run): scripts that print figures, not tests."""
