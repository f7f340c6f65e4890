"""Seed-compatible entry point: ``python -m infer.infer`` (see infer/infer.py)."""
