"""Benchmarks of rollback-verifier on the local cluster: `make bench` (python -m bench). See bench/README.md."""
