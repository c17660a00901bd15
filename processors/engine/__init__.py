"""The stream processors' runtime: one transactional consume → process → produce loop.

See :mod:`processors.engine._engine` for the guarantees.
"""

from agentstream.processors.engine._engine import EngineStats, ProcessorEngine
from agentstream.processors.engine._run import run_processors

__all__ = ["EngineStats", "ProcessorEngine", "run_processors"]
