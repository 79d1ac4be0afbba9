"""The serving room: answering requests, and talking to the serving runtime.

Online inference (``Predictor``), telemetry, and everything that talks to the runtime
(``torchserve``: the client and local servers; the load generator; traffic replay).

May import ``mlops.core`` and ``mlops.pipeline``. The TorchServe handler's import closure
(``inference``, ``telemetry`` and the core modules they use) is what goes into the archive.
"""
