"""End-to-end benchmarks (not tests): see benchmarks/README.md."""
