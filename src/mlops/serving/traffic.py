"""How a request says it is not client traffic: the deployment checks mark theirs with a header.

The handler logs marked rows with the mark and the monitor leaves them out. Kept apart (no
imports) so that the TorchServe client and the handler share it cheaply.
"""

TRAFFIC_HEADER = "X-Mlops-Traffic"
CHECK_TRAFFIC = "deploy-check"
