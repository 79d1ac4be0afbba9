"""The release room: how a model reaches production, and the records it leaves.

Packaging the archive (byte-reproducible), publishing it for remote servers, deploying,
promoting and rolling back with checks, the deployment records (ledger, GTO tags in git, MLflow
aliases) and their reconciliation after a crash, and the pull-request report.

May import ``mlops.core``, ``mlops.pipeline`` and ``mlops.serving``.
"""
