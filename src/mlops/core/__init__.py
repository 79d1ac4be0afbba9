"""The base room: errors, typed params, the data contract, paths, the task, small I/O helpers.

Imports nothing from the other rooms; everything else may import it. It is part of the
model archive (the served handler needs it), so keep it free of heavy or optional imports.
"""
