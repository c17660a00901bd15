"""The read-only guard of analyst queries.

A query passes when, outside string literals, quoted identifiers and comments
(ClickHouse's own lexical rules: ``'…'`` with ``\\'`` and ``''``, ``"…"``,
``` `…` ```, ``--`` / ``#`` line comments, nested ``/* */`` blocks):

* it is one statement (a trailing ``;`` is fine, a second statement is not);
* it starts with SELECT, WITH, SHOW, DESCRIBE/DESC or EXPLAIN (after ``(``);
* no word of a write or admin statement appears (INSERT, ALTER, DROP, ... —
  ``EXPLAIN INSERT`` and friends are refused too);
* it neither writes files (``INTO OUTFILE``) nor reads them or the network
  (``file()``, ``url()``, ``s3()``, ``remote()``, ``executable()``, ...);
* heredoc strings (``$$…$$``) do not appear (not worth the risk of a lexer mismatch);
* the role may read every table it names (on-call analysts: not ``query_audit``).

Anything the lexer cannot follow (an unterminated string or comment) is refused.
The guard is what the embedded engine has; against a ClickHouse server, give
analysts a user with ``readonly = 1`` as well (defence in depth).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from agentstream.core.errors import QueryRefused

__all__ = ["READ_ONLY_STATEMENTS", "Token", "check_read_only", "tokenize"]

READ_ONLY_STATEMENTS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN"})

_WRITE_WORDS = frozenset(
    {
        "INSERT",
        "ALTER",
        "DROP",
        "CREATE",
        "TRUNCATE",
        "RENAME",
        "ATTACH",
        "DETACH",
        "OPTIMIZE",
        "GRANT",
        "REVOKE",
        "KILL",
        "DELETE",
        "UPDATE",
        "UNDROP",
        "BACKUP",
        "RESTORE",
        "EXCHANGE",
        "SYSTEM",
        "SET",
        "USE",
        "OUTFILE",
        "INFILE",
    }
)

#: table (and scalar) functions that touch files, the network or run programs
_EXTERNAL_FUNCTIONS = frozenset(
    {
        "file",
        "filecluster",
        "url",
        "urlcluster",
        "s3",
        "s3cluster",
        "gcs",
        "oss",
        "cosn",
        "hdfs",
        "hdfscluster",
        "azureblobstorage",
        "azureblobstoragecluster",
        "deltalake",
        "hudi",
        "iceberg",
        "icebergs3",
        "remote",
        "remotesecure",
        "cluster",
        "clusterallreplicas",
        "mysql",
        "postgresql",
        "jdbc",
        "odbc",
        "mongodb",
        "redis",
        "sqlite",
        "executable",
        "input",
        "python",
        "fuzzjson",
        "fuzzquery",
        "loop",
    }
)

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Token:
    """A lexical token: ``word``, ``punct`` (one character), ``string`` or ``quoted``."""

    kind: str
    text: str
    start: int


def _skip_quoted(sql: str, start: int, quote: str) -> int:
    """Index after the closing ``quote`` of a literal opened at ``start``."""
    i = start + 1
    while i < len(sql):
        ch = sql[i]
        if ch == "\\":
            i += 2
            continue
        if ch == quote:
            if i + 1 < len(sql) and sql[i + 1] == quote:  # doubled quote
                i += 2
                continue
            return i + 1
        i += 1
    raise QueryRefused(f"unterminated {quote}-quoted text at position {start}")


def _skip_block_comment(sql: str, start: int) -> int:
    depth, i = 0, start
    while i < len(sql):
        if sql.startswith("/*", i):
            depth += 1
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    raise QueryRefused(f"unterminated /* comment at position {start}")


def tokenize(sql: str) -> list[Token]:
    """The tokens of ``sql`` (comments dropped); raises ``QueryRefused`` if it cannot."""
    tokens: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch.isspace():
            i += 1
        elif sql.startswith("--", i) or ch == "#":
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
        elif ch in "'\"`":
            end = _skip_quoted(sql, i, ch)
            tokens.append(Token("string" if ch == "'" else "quoted", sql[i:end], i))
            i = end
        elif ch == "$":
            raise QueryRefused("heredoc strings ($$...$$) are not allowed in analyst queries")
        else:
            match = _WORD.match(sql, i)
            if match:
                tokens.append(Token("word", match.group(0), i))
                i = match.end()
            elif ch.isdigit():
                j = i
                while j < n and (sql[j].isalnum() or sql[j] in "._"):
                    j += 1
                tokens.append(Token("number", sql[i:j], i))
                i = j
            else:
                tokens.append(Token("punct", ch, i))
                i += 1
    return tokens


def _first_keyword(tokens: list[Token]) -> str:
    for token in tokens:
        if token.kind == "punct" and token.text == "(":
            continue
        return token.text.upper() if token.kind == "word" else token.text
    return ""


def check_read_only(sql: str, *, forbidden_tables: Iterable[str] = ()) -> str:
    """``sql`` without its trailing ``;`` when it is a read-only query; else ``QueryRefused``."""
    tokens = tokenize(sql)
    if not tokens:
        raise QueryRefused("empty query")
    semicolons = [t for t in tokens if t.kind == "punct" and t.text == ";"]
    if semicolons:
        first = tokens.index(semicolons[0])
        if any(t.kind != "punct" or t.text != ";" for t in tokens[first:]):
            raise QueryRefused("only one statement per query")
        sql = sql[: semicolons[0].start]
        tokens = tokens[:first]
    keyword = _first_keyword(tokens)
    if keyword not in READ_ONLY_STATEMENTS:
        raise QueryRefused(
            f"read-only access: {keyword or 'this statement'} is not allowed "
            "(use SELECT, WITH, SHOW, DESCRIBE or EXPLAIN)"
        )
    blocked = {t.lower() for t in forbidden_tables}
    for index, token in enumerate(tokens):
        if token.kind not in ("word", "quoted"):
            continue
        name = token.text.strip('`"') if token.kind == "quoted" else token.text
        before = tokens[index - 1] if index else None
        after = tokens[index + 1] if index + 1 < len(tokens) else None
        qualified = (before is not None and before.text == ".") or (
            after is not None and after.text == "."
        )
        call = after is not None and after.text == "("
        if name.lower() in blocked and not call:
            raise QueryRefused(f"your role may not read {name}")
        if token.kind != "word":
            continue
        if call and name.lower() in _EXTERNAL_FUNCTIONS:
            raise QueryRefused(
                f"{name}() reads files or the network; not allowed in analyst queries"
            )
        if not call and not qualified and name.upper() in _WRITE_WORDS:
            raise QueryRefused(f"read-only access: {name.upper()} is not allowed")
    return sql.strip()
