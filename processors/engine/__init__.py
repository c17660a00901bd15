"""The stream processors' runtime: one transactional consume → process → produce loop.

See :mod:`agentstream.processors.engine._engine` for the guarantees.
"""

from agentstream.processors.engine._engine import EngineStats, ProcessorEngine
from agentstream.processors.engine._stages import partials_topic

__all__ = ["EngineStats", "ProcessorEngine", "partials_topic"]
