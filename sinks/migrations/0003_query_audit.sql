-- Every analyst query and report, refused ones included: who, as which role, when, what,
-- how many rows, how long. Kept as long as the legal retention class.
CREATE TABLE IF NOT EXISTS query_audit
(
    query_id       UUID,
    at             DateTime64(6, 'UTC'),
    who            LowCardinality(String),
    role           LowCardinality(String),
    tenant_scope   LowCardinality(String),
    via            LowCardinality(String),
    kind           LowCardinality(String),
    report         LowCardinality(String),
    statement      String CODEC(ZSTD(3)),
    params         String,
    rows           UInt64,
    duration_ms    Float64,
    refused        Bool,
    error          String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (at, query_id)
{{ttl_after at legal_days}}
{{table_settings}};
