"""Benchmarks of hbproto: ``python3 -m bench --help`` lists the sections (BENCHMARKS.md)."""
