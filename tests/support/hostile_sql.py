"""Statements an analyst key must never get past the checker (and why they are hostile).

Used by the guard tests (checker, CLI, HTTP interface). Each one either reads
something an oncall/tenant key may not read, writes, leaves the database,
touches files / the network / the server's state, changes the limits, or
tries to make the checker and the engine disagree on what the text means.
"""

from __future__ import annotations

#: ClickHouse table functions (docs: "Table Functions"), each called the plain way
TABLE_FUNCTIONS = (
    "file('/etc/passwd', 'LineAsString')",
    "fileCluster('c', '/etc/passwd')",
    "url('http://127.0.0.1:1/x', CSV)",
    "urlCluster('c', 'http://127.0.0.1:1/x')",
    "s3('https://b.s3.amazonaws.com/x.csv')",
    "s3Cluster('c', 'https://b/x')",
    "gcs('https://storage.googleapis.com/b/x')",
    "azureBlobStorage('DefaultEndpointsProtocol=https', 'c', 'x')",
    "hdfs('hdfs://h:9000/x', 'TSV')",
    "remote('127.0.0.1', system.one)",
    "remoteSecure('127.0.0.1', system.one)",
    "cluster('default', system.one)",
    "clusterAllReplicas('default', system.one)",
    "mysql('h:3306', 'db', 't', 'u', 'p')",
    "postgresql('h:5432', 'db', 't', 'u', 'p')",
    "mongodb('h:27017', 'db', 'c', 'u', 'p', 'x String')",
    "redis('h:6379', 'k', 'k String')",
    "sqlite('/tmp/x.db', 't')",
    "odbc('DSN=x', 't')",
    "jdbc('jdbc:x', 't')",
    "executable('x.sh', TSV, 'a String')",
    "input('a String')",
    "numbers(1e15)",
    "numbers_mt(1000000000000)",
    "zeros(1e12)",
    "generateRandom('a String')",
    "merge(currentDatabase(), '^query_audit$')",
    "merge('system', '^tables$')",
    "view(SELECT * FROM query_audit)",
    "values('a UInt8', 1)",
    "null('a UInt8')",
    "dictionary('d')",
    "iceberg('s3://b/t')",
    "icebergLocal('/tmp/t')",
    "deltaLake('s3://b/t')",
    "deltaLakeLocal('/tmp/t')",
    "hudi('s3://b/t')",
    "paimon('s3://b/t')",
    "arrowFlight('127.0.0.1:1', 'x')",
    "loop(query_audit)",
    "format(JSONEachRow, '{\"a\": 1}')",
    "fuzzJSON('{}')",
    "mergeTreeIndex(currentDatabase(), query_audit)",
)

HOSTILE: tuple[str, ...] = (
    # writes and admin statements
    "INSERT INTO tool_calls SELECT * FROM tool_calls",
    "DROP TABLE tool_calls",
    "drop table tool_calls",
    "ALTER TABLE tool_calls DELETE WHERE 1",
    "TRUNCATE TABLE tool_calls",
    "OPTIMIZE TABLE tool_calls FINAL",
    "SET readonly = 0",
    "SYSTEM SHUTDOWN",
    "KILL QUERY WHERE 1",
    "GRANT ALL ON *.* TO x",
    "CREATE TABLE x (a UInt8) ENGINE = Memory",
    "RENAME TABLE tool_calls TO t",
    "USE system",
    "EXPLAIN INSERT INTO t SELECT 1",
    "WITH 1 AS x INSERT INTO t SELECT x",
    "DELETE FROM tool_calls WHERE 1",
    # more than one statement, however hidden
    "SELECT 1; DROP TABLE tool_calls",
    "SELECT 1; SELECT 2",
    "SELECT 1 --x\n; DROP TABLE t",
    "SELECT 1 /* c */ ; /* c */ DROP TABLE t",
    # comments of every kind hiding a read of the audit
    "SELECT 1 AS x // '\n, (SELECT count() FROM query_audit) AS y -- '",
    "SELECT 1 AS x # '\n, (SELECT count() FROM query_audit) AS y",
    "SELECT 1 AS x -- '\n, (SELECT count() FROM query_audit) AS y",
    "SELECT /* /* */ 1 */ (SELECT count() FROM query_audit)",
    "SELECT /* '*/ (SELECT count() FROM query_audit) -- '",
    # the audit table, however spelled (oncall may not read it)
    "SELECT * FROM query_audit",
    "SELECT * FROM `query_audit`",
    'SELECT * FROM "query_audit"',
    "SELECT * FROM `query\\_audit`",
    "SELECT * FROM q\\u0075ery_audit",
    "SELECT * FROM tool_calls WHERE run_id IN (SELECT statement FROM query_audit)",
    "SELECT (SELECT max(statement) FROM query_audit)",
    "SELECT * FROM tool_calls WHERE run_id IN query_audit",
    "SELECT * FROM tool_calls WHERE run_id GLOBAL IN (query_audit)",
    "SELECT * FROM (SELECT * FROM (SELECT * FROM query_audit))",
    "WITH a AS (SELECT * FROM query_audit) SELECT * FROM a",
    "SELECT * FROM (WITH query_audit AS (SELECT 1) SELECT * FROM query_audit)",
    "SELECT 1 UNION ALL SELECT count() FROM query_audit",
    "SELECT * FROM tool_calls JOIN query_audit ON 1 = 1",
    "SELECT * FROM tool_calls, query_audit",
    "EXPLAIN SELECT * FROM query_audit",
    "DESCRIBE TABLE query_audit",
    # unicode look-alikes (Cyrillic o, full-width letters, zero-width joiner)
    "SELECT * FROM t\u043e\u043el_calls",  # Cyrillic o
    "SELECT * FROM \uff54ool_calls",  # full-width t
    "SELECT * FROM tool_calls\u200d",
    'SELECT "tool\u200d" FROM tool_calls',
    # other databases and the server's tables
    "SELECT * FROM system.tables",
    "SELECT * FROM `system`.`users`",
    "SELECT * FROM system.settings",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM INFORMATION_SCHEMA.COLUMNS",
    "SELECT * FROM default.tool_calls",
    "SELECT * FROM agentstream.query_audit",
    "SELECT system.one.dummy",
    "DESCRIBE TABLE system.users",
    "SELECT * FROM schema_migrations",
    # settings, formats, files
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT 1 SETTINGS max_execution_time = 0, max_result_rows = 0",
    "SELECT * FROM tool_calls SETTINGS additional_table_filters = {'tool_calls': '1'}",
    "SELECT 1 INTO OUTFILE '/tmp/x.csv'",
    "SELECT 1 INTO OUTFILE '/tmp/x.csv' FORMAT CSV",
    "SELECT 1 FORMAT Parquet",
    "SELECT $$a$$",
    "SELECT * FROM tool_calls SAMPLE 0.5",
    # functions that leave the query: dictionaries, settings, the server, files
    "SELECT dictGet('d', 'a', toUInt64(1))",
    "SELECT joinGet('j', 'a', 1)",
    "SELECT currentDatabase() AS db, 1",
    "SELECT getSetting('readonly')",
    "SELECT hostName(), version()",
    "SELECT currentUser()",
    "SELECT file('/etc/passwd')",
    "SELECT `file`('/etc/passwd')",
    "SELECT sleep(3)",
    "SELECT throwIf(1)",
    "SELECT getMacro('x')",
    "SELECT DICTGET('d', 'a', 1)",
    "SELECT Count(*) FROM tool_calls WHERE in(run_id, query_audit)",
    # quoted and backquoted function names (the old guard's hole)
    "SELECT * FROM `file`('/etc/passwd', 'LineAsString') LIMIT 2",
    "SELECT * FROM \"file\"('/etc/passwd', 'LineAsString')",
    "SELECT * FROM `url`('http://127.0.0.1:1/', CSV)",
    # empty and broken input
    "",
    "   -- only a comment",
    "SELECT 'unterminated",
    "SELECT 1 /* unterminated",
    "SELECT (",
    # too big to check cheaply: deep nesting, too many tokens
    "SELECT " + "(" * 300 + "1" + ")" * 300,
    "SELECT " + "+".join(["1"] * 2000),
    *(f"SELECT * FROM {fn}" for fn in TABLE_FUNCTIONS),
)

#: tenant keys must not read other tenants nor tenant-less tables
HOSTILE_FOR_TENANTS: tuple[str, ...] = (
    "SELECT * FROM alerts",
    "SELECT * FROM alerts_dedup",
)
