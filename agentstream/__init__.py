"""agentstream: the event backbone for AI agents in production."""

__all__: list[str] = []
