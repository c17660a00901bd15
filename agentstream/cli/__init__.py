"""The ``agentstream`` command line: one module per command group.

This package is the composition root: it is the only place in ``agentstream``
that imports ``processors`` and ``sinks``, and it does so lazily, inside the
command that needs them, so the thin SDK never pays for them.
"""

from agentstream.cli._app import main

__all__ = ["main"]
