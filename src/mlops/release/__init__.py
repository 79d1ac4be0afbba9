"""The release room: how a model reaches production, and the records it leaves.

Packaging the archive, deploying, promoting and rolling back with checks, the deployment
records (ledger, git tags, MLflow aliases) and the pull-request report.

May import ``mlops.core``, ``mlops.pipeline`` and ``mlops.serving``.
"""
