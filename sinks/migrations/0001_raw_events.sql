-- The audit trail of what agents did: one row per event, exactly once by event_id.
--
-- Conventions for the tables of agentstream:
--   * ReplacingMergeTree, ORDER BY (tenant_id, event_time, event_id): the sorting key is the
--     dedup key, so a replayed row (same event_id, hence same tenant and time) collapses into
--     one; queries that must not see a replay's copy read the *_dedup views (or use FINAL).
--   * insert_deduplication_token per batch + non_replicated_deduplication_window: a retried
--     batch is dropped at insert time already.
--   * PARTITION BY month; LowCardinality for enums and names (String, not Enum: a new enum
--     symbol in the Avro contract needs no DDL change).
--   * TTL by retention class; the day counts, the cold volume and the storage policy come
--     from the settings (RetentionSettings), never from this file.
--   * event_time must fit the TTL's DateTime range; anything else is rejected by the
--     constraint and dead-lettered by the sink with the reason.
-- Statements end with ';' at the end of a line and are idempotent (IF NOT EXISTS).
-- {{...}} are macros the migration runner renders from the settings (sinks/clickhouse/_migrate.py).
-- The *_dedup views expand '*' when created: a migration that adds a column recreates them.

CREATE TABLE IF NOT EXISTS tool_calls
(
    event_id       UUID,
    event_time     DateTime64(6, 'UTC'),
    tenant_id      LowCardinality(String),
    user_id        String,
    agent_id       LowCardinality(String),
    agent_version  LowCardinality(String),
    run_id         String,
    trace_id       Nullable(String),
    span_id        Nullable(String),
    tool           LowCardinality(String),
    status         LowCardinality(String),
    error_class    LowCardinality(String),
    error_code     LowCardinality(Nullable(String)),
    latency_ms     Float64,
    timeout_ms     Nullable(Float64),
    attempt        UInt32,
    fallback_used  Bool,
    output_valid   Bool,
    idempotent     Bool,
    atomic         Bool,
    retention      LowCardinality(String),
    params         String CODEC(ZSTD(3)),
    result_summary Nullable(String) CODEC(ZSTD(3)),
    ingested_at    DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_run run_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_tool tool TYPE set(256) GRANULARITY 4,
    CONSTRAINT event_time_in_ttl_range CHECK event_time >= '1970-01-01 00:00:00' AND event_time < '2106-01-01 00:00:00'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (tenant_id, event_time, event_id)
{{ttl_by_retention event_time}}
{{table_settings}};

CREATE TABLE IF NOT EXISTS model_calls
(
    event_id       UUID,
    event_time     DateTime64(6, 'UTC'),
    tenant_id      LowCardinality(String),
    user_id        String,
    agent_id       LowCardinality(String),
    agent_version  LowCardinality(String),
    run_id         String,
    trace_id       Nullable(String),
    span_id        Nullable(String),
    model          LowCardinality(String),
    provider       LowCardinality(String),
    input_tokens   UInt64,
    output_tokens  UInt64,
    cost_usd       Float64,
    latency_ms     Float64,
    status         LowCardinality(String),
    error_class    LowCardinality(String),
    error_code     LowCardinality(Nullable(String)),
    retention      LowCardinality(String),
    ingested_at    DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_run run_id TYPE bloom_filter(0.01) GRANULARITY 4,
    CONSTRAINT event_time_in_ttl_range CHECK event_time >= '1970-01-01 00:00:00' AND event_time < '2106-01-01 00:00:00'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (tenant_id, event_time, event_id)
{{ttl_by_retention event_time}}
{{table_settings}};

-- Validated transitions and the processor's synthesized ones (timeouts), from the lifecycle
-- topic; dwell_ms is the time the run spent in from_state.
CREATE TABLE IF NOT EXISTS state_transitions
(
    event_id       UUID,
    event_time     DateTime64(6, 'UTC'),
    tenant_id      LowCardinality(String),
    user_id        String,
    agent_id       LowCardinality(String),
    agent_version  LowCardinality(String),
    run_id         String,
    trace_id       Nullable(String),
    span_id        Nullable(String),
    from_state     LowCardinality(Nullable(String)),
    to_state       LowCardinality(String),
    reason         Nullable(String),
    error_category LowCardinality(Nullable(String)),
    dwell_ms       Nullable(UInt64),
    synthesized    Bool,
    retention      LowCardinality(String),
    ingested_at    DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_run run_id TYPE bloom_filter(0.01) GRANULARITY 4,
    CONSTRAINT event_time_in_ttl_range CHECK event_time >= '1970-01-01 00:00:00' AND event_time < '2106-01-01 00:00:00'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (tenant_id, event_time, event_id)
{{ttl_by_retention event_time}}
{{table_settings}};

CREATE TABLE IF NOT EXISTS review_decisions
(
    event_id       UUID,
    event_time     DateTime64(6, 'UTC'),
    tenant_id      LowCardinality(String),
    user_id        String,
    agent_id       LowCardinality(String),
    agent_version  LowCardinality(String),
    run_id         String,
    trace_id       Nullable(String),
    span_id        Nullable(String),
    reviewer       String,
    decision       LowCardinality(String),
    comment        Nullable(String),
    retention      LowCardinality(String),
    ingested_at    DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_run run_id TYPE bloom_filter(0.01) GRANULARITY 4,
    CONSTRAINT event_time_in_ttl_range CHECK event_time >= '1970-01-01 00:00:00' AND event_time < '2106-01-01 00:00:00'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (tenant_id, event_time, event_id)
{{ttl_by_retention event_time}}
{{table_settings}};

-- Deduplicated views: what analysts and the canned reports read.
CREATE VIEW IF NOT EXISTS tool_calls_dedup AS SELECT * FROM tool_calls FINAL;
CREATE VIEW IF NOT EXISTS model_calls_dedup AS SELECT * FROM model_calls FINAL;
CREATE VIEW IF NOT EXISTS state_transitions_dedup AS SELECT * FROM state_transitions FINAL;
CREATE VIEW IF NOT EXISTS review_decisions_dedup AS SELECT * FROM review_decisions FINAL;
