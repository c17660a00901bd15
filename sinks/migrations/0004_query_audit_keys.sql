-- Analyst access by API key: which key asked (its role and tenant are in role / tenant_scope),
-- the statement as it ran (re-rendered from the checked tree, with the limits the engine
-- applied) beside the statement as received, and how the request ended:
--   ok               it ran and its result was returned
--   refused          the key may not run it (or it is not a read-only analyst statement)
--   unauthenticated  no key, an unknown or revoked key, or a wrong secret
--   malformed        not a request the interface understands (no query, body too large ...)
--   failed           the engine failed it (timeout, limit, error)
-- client: the remote address of an HTTP request ('' for the local CLI).
ALTER TABLE query_audit ADD COLUMN IF NOT EXISTS key_name LowCardinality(String) DEFAULT who AFTER who;
ALTER TABLE query_audit ADD COLUMN IF NOT EXISTS statement_run String CODEC(ZSTD(3)) AFTER statement;
ALTER TABLE query_audit ADD COLUMN IF NOT EXISTS outcome LowCardinality(String) DEFAULT if(refused, 'refused', if(error = '', 'ok', 'failed')) AFTER refused;
ALTER TABLE query_audit ADD COLUMN IF NOT EXISTS client String DEFAULT '' AFTER via;
