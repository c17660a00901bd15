-- Issue #16 item 5: the 1 d rollup resolution (the daily business tier), streamed by the
-- rollups stage for the scope kinds in ``rollups.daily_scope_kinds`` (TENANT and AGENT by
-- default). Same columns as rollups_1h (CREATE ... AS copies its current structure, with
-- every column added by 0005-0008); retention: ``retention.rollups_1d_days`` (730).

CREATE TABLE IF NOT EXISTS rollups_1d AS rollups_1h
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (scope_kind, scope_key, window_start)
{{ttl_after window_start rollups_1d_days}}
{{table_settings}};

CREATE VIEW IF NOT EXISTS rollups_1d_dedup AS SELECT * FROM rollups_1d FINAL;
