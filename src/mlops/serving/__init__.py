"""The serving room: online inference (``Predictor``), telemetry, and everything that talks to
the serving runtime (``torchserve``: the client and local servers; the load generator).

May import ``mlops.core`` and ``mlops.pipeline``. The TorchServe handler's import closure
(``inference``, ``telemetry`` and the core modules they use) is what goes into the archive.
"""
