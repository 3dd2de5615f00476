"""Benchmarks: `python -m bench.<name> [--quick]`; each prints figures and ratios against a floor."""
