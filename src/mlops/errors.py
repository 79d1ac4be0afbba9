"""The one exception type that means "the user gave us something wrong"."""


class UserError(Exception):
    """Bad input (params, contract, data, arguments): reported as one clear message, exit 1."""
