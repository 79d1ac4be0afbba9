"""Command adapters: one module per ``mlops`` command, each ``main(argv) -> int``.

Like the DVC stage adapters in ``mlops.stages``, they parse arguments, call the rooms and
print; no logic of their own. ``mlops.cli`` holds the one registry and the one error handler.
"""
