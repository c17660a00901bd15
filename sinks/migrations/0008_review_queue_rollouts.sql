-- Issue #16: the review queue (runs the processors picked for human review) and the
-- rollout verdicts (PROMOTE / HOLD / ROLLBACK per stage, with the stage's figures).

CREATE TABLE IF NOT EXISTS review_queue
(
    request_id      UUID,
    requested_at    DateTime64(6, 'UTC'),
    tenant_id       LowCardinality(String),
    agent_id        LowCardinality(String),
    agent_version   LowCardinality(String),
    run_id          String,
    outcome         LowCardinality(String),
    error_category  LowCardinality(Nullable(String)),
    reason          LowCardinality(String),
    sample_rate     Float64,
    hash_fraction   Float64,
    sink_redactions Map(LowCardinality(String), UInt64),
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_run run_id TYPE bloom_filter(0.01) GRANULARITY 4,
    CONSTRAINT requested_at_in_ttl_range CHECK requested_at >= '1970-01-01 00:00:00' AND requested_at < '2106-01-01 00:00:00'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(requested_at)
ORDER BY (tenant_id, requested_at, request_id)
{{ttl_after requested_at business_days}}
{{table_settings}};

CREATE TABLE IF NOT EXISTS rollouts
(
    verdict_id       UUID,
    rollout_id       UUID,
    agent_id         LowCardinality(String),
    baseline         LowCardinality(String),
    candidate        LowCardinality(String),
    verdict          LowCardinality(String),
    stage_index      UInt32,
    stage_percent    UInt32,
    next_percent     Nullable(UInt32),
    reason           String,
    decided_at       DateTime64(6, 'UTC'),
    stage_started_at DateTime64(6, 'UTC'),
    manual           Bool,
    metrics          Map(LowCardinality(String), Float64),
    sink_redactions  Map(LowCardinality(String), UInt64),
    ingested_at      DateTime64(3, 'UTC') DEFAULT now64(3),
    CONSTRAINT decided_at_in_ttl_range CHECK decided_at >= '1970-01-01 00:00:00' AND decided_at < '2106-01-01 00:00:00'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(decided_at)
ORDER BY (agent_id, decided_at, verdict_id)
{{ttl_after decided_at legal_days}}
{{table_settings}};

CREATE VIEW IF NOT EXISTS review_queue_dedup AS SELECT * FROM review_queue FINAL;
CREATE VIEW IF NOT EXISTS rollouts_dedup AS SELECT * FROM rollouts FINAL;

-- Rollup v4: review approval and scores per scope and window (coverage is reviews / ended runs).
ALTER TABLE rollups_1s ADD COLUMN IF NOT EXISTS reviews_approved UInt64 AFTER overrides;
ALTER TABLE rollups_1s ADD COLUMN IF NOT EXISTS review_score_sum UInt64 AFTER reviews_approved;
ALTER TABLE rollups_1s ADD COLUMN IF NOT EXISTS reviews_scored UInt64 AFTER review_score_sum;
ALTER TABLE rollups_1m ADD COLUMN IF NOT EXISTS reviews_approved UInt64 AFTER overrides;
ALTER TABLE rollups_1m ADD COLUMN IF NOT EXISTS review_score_sum UInt64 AFTER reviews_approved;
ALTER TABLE rollups_1m ADD COLUMN IF NOT EXISTS reviews_scored UInt64 AFTER review_score_sum;
ALTER TABLE rollups_1h ADD COLUMN IF NOT EXISTS reviews_approved UInt64 AFTER overrides;
ALTER TABLE rollups_1h ADD COLUMN IF NOT EXISTS review_score_sum UInt64 AFTER reviews_approved;
ALTER TABLE rollups_1h ADD COLUMN IF NOT EXISTS reviews_scored UInt64 AFTER review_score_sum;
CREATE OR REPLACE VIEW rollups_1s_dedup AS SELECT * FROM rollups_1s FINAL;
CREATE OR REPLACE VIEW rollups_1m_dedup AS SELECT * FROM rollups_1m FINAL;
CREATE OR REPLACE VIEW rollups_1h_dedup AS SELECT * FROM rollups_1h FINAL;
