"""Benchmarks, the fleet harness and synthetic depots: tooling, not product.

Run by `manage.py bench` (this package is a Django app only to carry that command). No product
app imports it (an import-linter contract in pyproject.toml says so); it needs the dev extras
(scipy for the LP reference), which the product does not.
"""
