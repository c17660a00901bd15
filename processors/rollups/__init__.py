"""Rollups: tumbling event-time windows of 1 s, 1 min and 1 h per scope.

Pure and deterministic; :mod:`processors.engine` is a thin shell around it:

* :class:`RollupAggregator` — ``add(event)`` (tool calls, model calls, validated
  lifecycle transitions, review decisions), ``advance(watermark=None) ->
  list[Rollup]`` closes and emits each window once; JSON-able state for the
  engine's changelog (``drain_changes``, ``snapshot``, ``restore``);
* :class:`LatencySketch` — ddsketch bins, exact merge, compact bytes (the
  ``latency_sketch`` of a Rollup);
* :func:`merge_rollups` — partial rollups of one window, or 1 s into 1 min;
* :class:`MergeStage` — the second stage of the two-stage rollups: per-partition
  partial cells merged into the rollups once every partition's mark has passed;
* :func:`scopes_of` — the scopes an event counts in.

Example::

    agg = RollupAggregator(settings.rollups)
    for event in events:
        agg.add(event)
    for rollup in agg.advance():      # windows the watermark has passed
        await rollups_topic.send(key=rollup.scope_key, value=encode_model(rollup))
"""

from agentstream.processors.rollups._aggregator import (
    ADDED,
    DUPLICATE,
    META_KEY,
    QUANTILES,
    RESOLUTION_US,
    TOO_LATE,
    AggregatorMeta,
    RollupAggregator,
    RollupEvent,
    Verdict,
    build_rollup,
    window_start,
)
from agentstream.processors.rollups._cells import (
    FIGURES,
    Cell,
    CellJson,
    Scope,
    ScopeJson,
    scopes_of,
)
from agentstream.processors.rollups._merge import merge_rollups
from agentstream.processors.rollups._partials import (
    Mark,
    MergeStage,
    Partial,
    decode_message,
    encode_mark,
    encode_partial,
)
from agentstream.processors.rollups._sketch import (
    FORMAT_VERSION,
    LatencySketch,
    SketchJson,
    mapping_for,
)

__all__ = [
    "ADDED",
    "DUPLICATE",
    "FIGURES",
    "FORMAT_VERSION",
    "META_KEY",
    "QUANTILES",
    "RESOLUTION_US",
    "TOO_LATE",
    "AggregatorMeta",
    "Cell",
    "CellJson",
    "LatencySketch",
    "Mark",
    "MergeStage",
    "Partial",
    "RollupAggregator",
    "RollupEvent",
    "Scope",
    "ScopeJson",
    "SketchJson",
    "Verdict",
    "build_rollup",
    "decode_message",
    "encode_mark",
    "encode_partial",
    "mapping_for",
    "merge_rollups",
    "scopes_of",
    "window_start",
]
