"""Benchmarks: ``python -m bench.<name> [--quick]``; each prints figures and ratios to a baseline."""
