"""Continuous machine learning as GitOps: the library behind the DVC stages and the `mlops` CLI."""

__version__ = "0.1.0"
