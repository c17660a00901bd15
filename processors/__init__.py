"""Stream processors: contract gate, lifecycle state machine, rollups, alert rules."""
