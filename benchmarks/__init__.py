"""Throughput and latency benchmarks: every number is a ratio against a peer in one run.

Run `python -m benchmarks.run` (or `make bench`); see benchmarks/README.md.
"""
