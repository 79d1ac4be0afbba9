"""Old import path of the feature pipeline's pickled class.

Kept so models fitted before the package was split into rooms still load (the PR report
fetches production's model at its tag).
"""

from mlops.pipeline.features import ContractColumns

__all__ = ["ContractColumns"]
