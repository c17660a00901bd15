-- Issue #16 (items 2, 4, 5): hand-offs, business value, benchmark results, end-user feedback.
--   state_transitions  parent_run_id, handoff_from_agent (a hand-off: one agent passes a task
--                      to the next), value_usd (business value of a COMPLETED run)
--   rollups_*          handoffs (runs started as a hand-off), value_usd (value of completed runs)
--   eval_results       one row per benchmark task run by one agent version (EvalResult)
--   feedback           end-user satisfaction 1..5 with an optional comment (Feedback)
-- Views expand '*' when created, so the *_dedup views of altered tables are recreated.

ALTER TABLE state_transitions ADD COLUMN IF NOT EXISTS parent_run_id Nullable(String) AFTER redactions;
ALTER TABLE state_transitions ADD COLUMN IF NOT EXISTS handoff_from_agent LowCardinality(Nullable(String)) AFTER parent_run_id;
ALTER TABLE state_transitions ADD COLUMN IF NOT EXISTS value_usd Nullable(Float64) AFTER handoff_from_agent;
ALTER TABLE rollups_1s ADD COLUMN IF NOT EXISTS handoffs UInt64 AFTER redactions;
ALTER TABLE rollups_1s ADD COLUMN IF NOT EXISTS value_usd Float64 AFTER handoffs;
ALTER TABLE rollups_1m ADD COLUMN IF NOT EXISTS handoffs UInt64 AFTER redactions;
ALTER TABLE rollups_1m ADD COLUMN IF NOT EXISTS value_usd Float64 AFTER handoffs;
ALTER TABLE rollups_1h ADD COLUMN IF NOT EXISTS handoffs UInt64 AFTER redactions;
ALTER TABLE rollups_1h ADD COLUMN IF NOT EXISTS value_usd Float64 AFTER handoffs;

CREATE TABLE IF NOT EXISTS eval_results
(
    event_id        UUID,
    event_time      DateTime64(6, 'UTC'),
    tenant_id       LowCardinality(String),
    user_id         String,
    agent_id        LowCardinality(String),
    agent_version   LowCardinality(String),
    run_id          String,
    trace_id        Nullable(String),
    span_id         Nullable(String),
    suite           LowCardinality(String),
    task_id         String,
    expected        Nullable(String) CODEC(ZSTD(3)),
    got             Nullable(String) CODEC(ZSTD(3)),
    correct         Bool,
    latency_ms      Float64,
    cost_usd        Float64,
    retention       LowCardinality(String),
    redactions      Map(LowCardinality(String), UInt64),
    sink_redactions Map(LowCardinality(String), UInt64),
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_suite suite TYPE set(256) GRANULARITY 4,
    CONSTRAINT event_time_in_ttl_range CHECK event_time >= '1970-01-01 00:00:00' AND event_time < '2106-01-01 00:00:00'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (tenant_id, event_time, event_id)
{{ttl_by_retention event_time}}
{{table_settings}};

CREATE TABLE IF NOT EXISTS feedback
(
    event_id        UUID,
    event_time      DateTime64(6, 'UTC'),
    tenant_id       LowCardinality(String),
    user_id         String,
    agent_id        LowCardinality(String),
    agent_version   LowCardinality(String),
    run_id          String,
    trace_id        Nullable(String),
    span_id         Nullable(String),
    satisfaction    UInt8,
    comment         Nullable(String),
    retention       LowCardinality(String),
    redactions      Map(LowCardinality(String), UInt64),
    sink_redactions Map(LowCardinality(String), UInt64),
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_run run_id TYPE bloom_filter(0.01) GRANULARITY 4,
    CONSTRAINT event_time_in_ttl_range CHECK event_time >= '1970-01-01 00:00:00' AND event_time < '2106-01-01 00:00:00'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (tenant_id, event_time, event_id)
{{ttl_by_retention event_time}}
{{table_settings}};

CREATE OR REPLACE VIEW state_transitions_dedup AS SELECT * FROM state_transitions FINAL;
CREATE OR REPLACE VIEW rollups_1s_dedup AS SELECT * FROM rollups_1s FINAL;
CREATE OR REPLACE VIEW rollups_1m_dedup AS SELECT * FROM rollups_1m FINAL;
CREATE OR REPLACE VIEW rollups_1h_dedup AS SELECT * FROM rollups_1h FINAL;
CREATE VIEW IF NOT EXISTS eval_results_dedup AS SELECT * FROM eval_results FINAL;
CREATE VIEW IF NOT EXISTS feedback_dedup AS SELECT * FROM feedback FINAL;
