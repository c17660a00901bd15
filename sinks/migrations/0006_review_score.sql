-- Issue #16: ReviewDecision v3 carries the reviewer's quality score (1-5, null when not given;
-- rows written before v3 read as null). The *_dedup view expands '*' when created: recreated.

ALTER TABLE review_decisions ADD COLUMN IF NOT EXISTS score Nullable(UInt8) AFTER comment;

CREATE OR REPLACE VIEW review_decisions_dedup AS SELECT * FROM review_decisions FINAL;
