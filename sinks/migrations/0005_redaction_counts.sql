-- Issue #14: a record of what redaction replaced (kind -> count, never the values).
--   redactions       what the Emitter replaced (the events' contract field; rollups sum it)
--   sink_redactions  what the sink's own pass replaced before storing the row
-- Views expand '*' when created, so the *_dedup views are recreated to show the new columns.

ALTER TABLE tool_calls ADD COLUMN IF NOT EXISTS redactions Map(LowCardinality(String), UInt64) AFTER retention;
ALTER TABLE tool_calls ADD COLUMN IF NOT EXISTS sink_redactions Map(LowCardinality(String), UInt64) AFTER redactions;
ALTER TABLE model_calls ADD COLUMN IF NOT EXISTS redactions Map(LowCardinality(String), UInt64) AFTER retention;
ALTER TABLE model_calls ADD COLUMN IF NOT EXISTS sink_redactions Map(LowCardinality(String), UInt64) AFTER redactions;
ALTER TABLE state_transitions ADD COLUMN IF NOT EXISTS redactions Map(LowCardinality(String), UInt64) AFTER retention;
ALTER TABLE state_transitions ADD COLUMN IF NOT EXISTS sink_redactions Map(LowCardinality(String), UInt64) AFTER redactions;
ALTER TABLE review_decisions ADD COLUMN IF NOT EXISTS redactions Map(LowCardinality(String), UInt64) AFTER retention;
ALTER TABLE review_decisions ADD COLUMN IF NOT EXISTS sink_redactions Map(LowCardinality(String), UInt64) AFTER redactions;
ALTER TABLE invalid_events ADD COLUMN IF NOT EXISTS sink_redactions Map(LowCardinality(String), UInt64);
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS sink_redactions Map(LowCardinality(String), UInt64);
ALTER TABLE rollups_1s ADD COLUMN IF NOT EXISTS redactions Map(LowCardinality(String), UInt64) AFTER computed_at;
ALTER TABLE rollups_1m ADD COLUMN IF NOT EXISTS redactions Map(LowCardinality(String), UInt64) AFTER computed_at;
ALTER TABLE rollups_1h ADD COLUMN IF NOT EXISTS redactions Map(LowCardinality(String), UInt64) AFTER computed_at;

CREATE OR REPLACE VIEW tool_calls_dedup AS SELECT * FROM tool_calls FINAL;
CREATE OR REPLACE VIEW model_calls_dedup AS SELECT * FROM model_calls FINAL;
CREATE OR REPLACE VIEW state_transitions_dedup AS SELECT * FROM state_transitions FINAL;
CREATE OR REPLACE VIEW review_decisions_dedup AS SELECT * FROM review_decisions FINAL;
CREATE OR REPLACE VIEW invalid_events_dedup AS SELECT * FROM invalid_events FINAL;
CREATE OR REPLACE VIEW alerts_dedup AS SELECT * FROM alerts FINAL;
CREATE OR REPLACE VIEW rollups_1s_dedup AS SELECT * FROM rollups_1s FINAL;
CREATE OR REPLACE VIEW rollups_1m_dedup AS SELECT * FROM rollups_1m FINAL;
CREATE OR REPLACE VIEW rollups_1h_dedup AS SELECT * FROM rollups_1h FINAL;
