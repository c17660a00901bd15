-- What the processors publish: dead letters, rollups, alerts.

-- Dead letters: the original bytes, where they came from and why they were refused.
-- The raw bytes were refused before redaction could be trusted, so they keep the shorter
-- (business) retention. One row per invalid_id.
CREATE TABLE IF NOT EXISTS invalid_events
(
    invalid_id     UUID,
    detected_time  DateTime64(6, 'UTC'),
    source_topic   LowCardinality(String),
    partition      UInt32,
    offset         UInt64,
    key            Nullable(String),
    raw            String CODEC(ZSTD(3)),
    reason         String,
    error_type     LowCardinality(String),
    run_id         Nullable(String),
    tenant_id      LowCardinality(Nullable(String)),
    event_id       Nullable(String),
    ingested_at    DateTime64(3, 'UTC') DEFAULT now64(3),
    CONSTRAINT detected_time_in_ttl_range CHECK detected_time >= '1970-01-01 00:00:00' AND detected_time < '2106-01-01 00:00:00'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(detected_time)
ORDER BY (source_topic, detected_time, invalid_id)
{{ttl_after detected_time business_days}}
{{table_settings}};

-- One row per alert state change (FIRING, RESOLVED).
CREATE TABLE IF NOT EXISTS alerts
(
    alert_id       UUID,
    rule_id        LowCardinality(String),
    state          LowCardinality(String),
    severity       LowCardinality(String),
    scope_key      String,
    metric         LowCardinality(String),
    value          Float64,
    threshold      Float64,
    comparator     LowCardinality(String),
    resolution     LowCardinality(String),
    window_start   DateTime64(6, 'UTC'),
    window_end     DateTime64(6, 'UTC'),
    fired_at       DateTime64(6, 'UTC'),
    message        String,
    channels       Array(LowCardinality(String)),
    ingested_at    DateTime64(3, 'UTC') DEFAULT now64(3),
    CONSTRAINT fired_at_in_ttl_range CHECK fired_at >= '1970-01-01 00:00:00' AND fired_at < '2106-01-01 00:00:00'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(fired_at)
ORDER BY (rule_id, fired_at, alert_id)
{{ttl_after fired_at business_days}}
{{table_settings}};

-- Rollups, one table per resolution. A window may be emitted again (late events): the
-- row with the latest computed_at wins (ReplacingMergeTree version column).
CREATE TABLE IF NOT EXISTS rollups_1s
(
    resolution     LowCardinality(String),
    window_start   DateTime64(6, 'UTC'),
    window_end     DateTime64(6, 'UTC'),
    scope_kind     LowCardinality(String),
    scope_key      String,
    tenant_id      LowCardinality(Nullable(String)),
    agent_id       LowCardinality(Nullable(String)),
    agent_version  LowCardinality(Nullable(String)),
    tool           LowCardinality(Nullable(String)),
    count          UInt64,
    success        UInt64,
    partial        UInt64,
    error          UInt64,
    retryable      UInt64,
    non_retryable  UInt64,
    timeout        UInt64,
    late_events    UInt64,
    latency_p50    Nullable(Float64),
    latency_p95    Nullable(Float64),
    latency_p99    Nullable(Float64),
    latency_sketch Nullable(String),
    tokens_in      UInt64,
    tokens_out     UInt64,
    cost_usd       Float64,
    model_calls    UInt64,
    runs_started   UInt64,
    runs_completed UInt64,
    runs_failed    UInt64,
    reviews        UInt64,
    overrides      UInt64,
    state_time_ms  Map(LowCardinality(String), UInt64),
    computed_at    DateTime64(6, 'UTC'),
    ingested_at    DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_tenant tenant_id TYPE set(1024) GRANULARITY 4,
    CONSTRAINT window_start_in_ttl_range CHECK window_start >= '1970-01-01 00:00:00' AND window_start < '2106-01-01 00:00:00'
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (scope_kind, scope_key, window_start)
{{ttl_after window_start rollups_1s_days}}
{{table_settings}};

-- Same columns as rollups_1s.
CREATE TABLE IF NOT EXISTS rollups_1m AS rollups_1s
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (scope_kind, scope_key, window_start)
{{ttl_after window_start rollups_1m_days}}
{{table_settings}};

CREATE TABLE IF NOT EXISTS rollups_1h AS rollups_1s
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (scope_kind, scope_key, window_start)
{{ttl_after window_start rollups_1h_days}}
{{table_settings}};

CREATE VIEW IF NOT EXISTS invalid_events_dedup AS SELECT * FROM invalid_events FINAL;
CREATE VIEW IF NOT EXISTS alerts_dedup AS SELECT * FROM alerts FINAL;
CREATE VIEW IF NOT EXISTS rollups_1s_dedup AS SELECT * FROM rollups_1s FINAL;
CREATE VIEW IF NOT EXISTS rollups_1m_dedup AS SELECT * FROM rollups_1m FINAL;
CREATE VIEW IF NOT EXISTS rollups_1h_dedup AS SELECT * FROM rollups_1h FINAL;
