"""The monitoring room: ingestion of landed batches and the production monitor.

May import ``mlops.core``, ``mlops.pipeline``, ``mlops.serving`` and ``mlops.release``.
"""
