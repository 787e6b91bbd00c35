"""Benchmarks of funasr-widget: run `python -m bench` (see bench/README.md)."""
