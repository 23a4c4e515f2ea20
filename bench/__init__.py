"""Reproducible benchmark of the gateway in front of a real multi-worker MLflow (bench/run.py)."""
