"""The pipeline room: from raw batches to a fitted, evaluated, tracked model.

Datasets, validation (Great Expectations), splitting, the feature pipeline, training,
evaluation, figures and MLflow tracking.

May import ``mlops.core`` only. ``features`` is pickled inside every fitted model, so it is
also part of the model archive; nothing here is imported at package import time.
"""
