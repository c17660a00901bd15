"""Checked SQL: what an analyst asks, parsed, checked, scoped and re-rendered.

Each statement is parsed with sqlglot (ClickHouse dialect). Anything it cannot
parse is refused. What may pass:

* exactly one SELECT / WITH ... SELECT / UNION (EXCEPT, INTERSECT) / DESCRIBE /
  EXPLAIN <select> (SHOW is answered from a fixed table, see ``_handshake``);
* only the syntax nodes in :data:`_NODES` (unknown syntax is refused, not guessed at);
* table references: plain names of the tables and views the key's role may
  read (:data:`ANALYST_TABLES`), or a CTE defined in the statement; no
  database prefix, no table functions (``numbers()``, ``file()``, ``merge()``...);
* functions from the allow-list (:mod:`._functions`);
* no SETTINGS, no INTO OUTFILE, no ``IN table``; a FORMAT clause only where the
  caller allows one (the HTTP interface, from its whitelist), taken out of the tree;
* identifiers of letters, digits and ``_`` only (no look-alikes, no quoting games).

For tenant keys every table reference becomes ``(SELECT * FROM t WHERE
tenant_id = '<tenant>') AS t``. The statement that runs is rendered from the
checked tree (comments dropped, identifiers quoted), never the raw text; the
rendering is parsed and checked once more and must render to itself.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from agentstream.core.errors import QueryRefused, QueryUnparsable
from agentstream.schemas import RESOLUTIONS
from agentstream.sinks.analyst._functions import is_allowed_function
from agentstream.sinks.analyst._keys import Principal

__all__ = [
    "ANALYST_TABLES",
    "OUTPUT_FORMATS",
    "CheckedStatement",
    "check_statement",
    "readable_tables",
]

_DIALECT = "clickhouse"

# EXPLAIN / SHOW parse as commands; sqlglot warns about each one (noise in the worker log)
logging.getLogger("sqlglot").setLevel(logging.ERROR)

_TENANT_TABLES = (
    "tool_calls",
    "model_calls",
    "state_transitions",
    "review_decisions",
    "review_queue",
    "invalid_events",
    *(f"rollups_{r}" for r in RESOLUTIONS),
    "eval_results",
    "feedback",
)

#: table/view → the roles that may read it; tenant keys read only tables with ``tenant_id``
ANALYST_TABLES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        **{t: frozenset({"admin", "oncall", "tenant"}) for t in _TENANT_TABLES},
        **{f"{t}_dedup": frozenset({"admin", "oncall", "tenant"}) for t in _TENANT_TABLES},
        "alerts": frozenset({"admin", "oncall"}),
        "alerts_dedup": frozenset({"admin", "oncall"}),
        "rollouts": frozenset({"admin", "oncall"}),
        "rollouts_dedup": frozenset({"admin", "oncall"}),
        "query_audit": frozenset({"admin"}),
    }
)

#: output formats a client may ask for (FORMAT clause or ``default_format``)
OUTPUT_FORMATS = frozenset(
    {
        "TabSeparated",
        "TSV",
        "TabSeparatedWithNames",
        "TSVWithNames",
        "TabSeparatedWithNamesAndTypes",
        "TSVWithNamesAndTypes",
        "CSV",
        "CSVWithNames",
        "JSON",
        "JSONCompact",
        "JSONEachRow",
        "JSONCompactEachRow",
        "JSONStrings",
        "Native",
        "RowBinary",
        "RowBinaryWithNames",
        "RowBinaryWithNamesAndTypes",
        "Pretty",
        "PrettyCompact",
        "Values",
    }
)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMBER = re.compile(r"^(?:0[xX][0-9A-Fa-f]+|0[bB][01]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)$")

#: syntax an analyst statement may contain (functions are checked by name on top)
_NODES: tuple[type[exp.Expr], ...] = (
    exp.Select,
    exp.Union,
    exp.Except,
    exp.Intersect,
    exp.From,
    exp.Where,
    exp.Group,
    exp.Having,
    exp.Order,
    exp.Ordered,
    exp.Limit,
    exp.Offset,
    exp.Join,
    exp.Subquery,
    exp.With,
    exp.CTE,
    exp.TableAlias,
    exp.Alias,
    exp.Column,
    exp.Identifier,
    exp.Literal,
    exp.Star,
    exp.Table,
    exp.Final,
    exp.Paren,
    exp.Tuple,
    exp.Array,
    exp.Bracket,
    exp.Lambda,
    exp.Window,
    exp.WindowSpec,
    exp.Interval,
    exp.DataType,
    exp.DataTypeParam,
    exp.Var,
    exp.Null,
    exp.Boolean,
    exp.Distinct,
    exp.Describe,
    exp.In,
    exp.Between,
    exp.Is,
    exp.Like,
    exp.ILike,
    exp.Not,
    exp.Neg,
    exp.Exists,
    exp.And,
    exp.Or,
    exp.Xor,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.NullSafeEQ,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.IntDiv,
    exp.Mod,
    exp.DPipe,
    exp.Placeholder,
)

_QUERIES = (exp.Select, exp.Union, exp.Except, exp.Intersect)


@dataclass(frozen=True)
class CheckedStatement:
    """A statement that passed: the SQL to run (without our SETTINGS) and its output format."""

    received: str
    sql: str
    kind: str
    fmt: str | None = None
    #: tables the statement reads (after CTEs), for the engine's ``additional_table_filters``
    tables: frozenset[str] = frozenset()


def readable_tables(role: str) -> list[str]:
    """The tables and views ``role`` may read."""
    return sorted(t for t, roles in ANALYST_TABLES.items() if role in roles)


#: tokens a statement may have (sqlglot's cost grows faster than linearly with size)
DEFAULT_MAX_TOKENS = 3000


def _parse(sql: str, max_tokens: int = DEFAULT_MAX_TOKENS) -> exp.Expr:
    if not sql.strip():
        raise QueryUnparsable("Empty query")
    try:
        tokens = sqlglot.tokenize(sql, read=_DIALECT)
    except SqlglotError as exc:
        raise QueryUnparsable(f"Syntax error (ClickHouse dialect): {exc}") from exc
    if len(tokens) > max_tokens:
        raise QueryRefused(
            f"statement of {len(tokens)} tokens is over the limit of {max_tokens} "
            "(analyst.max_statement_words)"
        )
    try:
        statements = [
            s
            for s in sqlglot.parse(sql, read=_DIALECT)
            if s is not None and not isinstance(s, exp.Semicolon)  # a comment after the ';'
        ]
    except SqlglotError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QueryUnparsable(f"Syntax error (ClickHouse dialect): {first}") from exc
    if not statements:
        raise QueryUnparsable("Empty query")
    if len(statements) > 1:
        raise QueryRefused("Multi-statements are not allowed: send one statement per query")
    return statements[0]


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous | exp.AnonymousAggFunc):
        return str(node.this)
    if isinstance(node, exp.CombinedAggFunc | exp.ParameterizedAgg | exp.CombinedParameterizedAgg):
        return str(node.this)
    rendered = node.sql(dialect=_DIALECT, comments=False)
    tokens = sqlglot.tokenize(rendered, read=_DIALECT)
    return tokens[0].text if tokens else ""


class _Checker:
    def __init__(
        self,
        principal: Principal,
        *,
        known_objects: Collection[str],
        allow_params: bool,
    ) -> None:
        self.principal = principal
        self.known_objects = frozenset(known_objects)
        self.allow_params = allow_params
        self.tables: set[str] = set()

    def check_tree(self, tree: exp.Expr) -> None:
        ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
        for name in ctes:
            if not _IDENTIFIER.match(name):
                raise QueryRefused(f"CTE name {name!r}: letters, digits and _ only")
            if name in self.known_objects or name in ANALYST_TABLES:
                raise QueryRefused(f"a CTE may not be named like the table {name!r}")
        for node in tree.walk():
            self._check_node(node, ctes)

    def _check_node(self, node: exp.Expr, ctes: set[str]) -> None:
        if isinstance(node, exp.Func) and not isinstance(node, _NODES):
            name = _function_name(node)
            if not is_allowed_function(name):
                raise QueryRefused(f"Function {name!r} is not allowed in analyst queries")
            return
        if not isinstance(node, _NODES):
            raise QueryRefused(
                f"{type(node).__name__} is not allowed in analyst queries "
                "(one SELECT, WITH, UNION, DESCRIBE or EXPLAIN over the analyst tables)"
            )
        if isinstance(node, _QUERIES):
            if node.args.get("settings"):
                raise QueryRefused(
                    "SETTINGS are not allowed in analyst queries (limits are set by role)"
                )
            if node.args.get("format"):
                raise QueryRefused("FORMAT is only allowed once, at the end of the statement")
        if isinstance(node, exp.Table):
            self._check_table(node, ctes)
        elif isinstance(node, exp.Column):
            if node.args.get("db") or node.args.get("catalog"):
                raise QueryRefused(
                    f"{node.sql(_DIALECT)}: columns of other databases are not allowed"
                )
        elif isinstance(node, exp.Identifier):
            if not _IDENTIFIER.match(node.name):
                raise QueryRefused(
                    f"identifier {node.name!r}: letters, digits and _ only in analyst queries"
                )
        elif isinstance(node, exp.Var):
            if not _IDENTIFIER.match(node.name):
                raise QueryRefused(f"{node.name!r} is not allowed here")
        elif isinstance(node, exp.Literal):
            if not node.is_string and not _NUMBER.match(node.name):
                raise QueryRefused(f"number {node.name!r} is not allowed")
        elif isinstance(node, exp.Placeholder):
            if not self.allow_params:
                raise QueryRefused("query parameters are not allowed here")
            if not _IDENTIFIER.match(node.name) or not isinstance(
                node.args.get("kind"), exp.DataType
            ):
                raise QueryRefused("a query parameter is {name:Type}")
        elif isinstance(node, exp.In):
            field = node.args.get("field")
            items = node.expressions
            if field is not None or (
                len(items) == 1 and isinstance(items[0], exp.Column | exp.Identifier | exp.Table)
            ):
                raise QueryRefused("IN <table> is not allowed: use IN (SELECT ... FROM table)")

    def _check_table(self, table: exp.Table, ctes: set[str]) -> None:
        if not isinstance(table.this, exp.Identifier):
            raise QueryRefused(
                f"table function {table.this.sql(_DIALECT)[:60]!r} "
                "is not allowed in analyst queries"
            )
        extra = sorted(
            k for k, v in table.args.items() if v and k not in ("this", "alias", "db", "catalog")
        )
        if extra:
            raise QueryRefused(f"{table.name}: {', '.join(extra)} not allowed on a table reference")
        if table.args.get("db") or table.args.get("catalog"):
            raise QueryRefused(
                f"{table.sql(_DIALECT)}: other databases (system, ...) are not readable; "
                f"tables: {', '.join(readable_tables(self.principal.role))}"
            )
        name = table.name
        if name in ctes and name not in ANALYST_TABLES:
            return
        roles = ANALYST_TABLES.get(name)
        if roles is None:
            raise QueryRefused(
                f"Table {name!r} is not an analyst table; "
                f"tables: {', '.join(readable_tables(self.principal.role))}"
            )
        if self.principal.role not in roles:
            raise QueryRefused(
                f"key {self.principal.who!r} ({self.principal.role}) may not read {name}"
            )
        self.tables.add(name)


def _scope_to_tenant(tree: exp.Expr, tenant: str, ctes: set[str]) -> None:
    """Replace each table reference by ``(SELECT * FROM t WHERE tenant_id = '<tenant>') AS t``."""
    for table in list(tree.find_all(exp.Table)):
        if isinstance(table.parent, exp.Describe):
            continue
        if table.name in ctes and table.name not in ANALYST_TABLES:
            continue
        if table.args.get("sample") is not None:
            raise QueryRefused("SAMPLE is not available to tenant keys")
        alias = table.alias or table.name
        target: exp.Expr = table.parent if isinstance(table.parent, exp.Final) else table
        source = exp.Table(this=exp.to_identifier(table.name))
        inner_from: exp.Expr = exp.Final(this=source) if target is not table else source
        inner = (
            exp.select("*")
            .from_(inner_from, copy=False)
            .where(exp.column("tenant_id").eq(exp.Literal.string(tenant)), copy=False)
        )
        target.replace(
            exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(alias)))
        )


def _render(tree: exp.Expr) -> str:
    return tree.sql(dialect=_DIALECT, comments=False, identify=True)


def _statement_tree(
    sql: str, *, allow_format: bool, max_tokens: int = DEFAULT_MAX_TOKENS
) -> tuple[exp.Expr, str, str | None]:
    """The parsed statement, its kind and the FORMAT it asked for (taken out of the tree)."""
    tree = _parse(sql, max_tokens)
    kind = "select"
    if isinstance(tree, exp.Command):
        word = str(tree.this).upper()
        if word != "EXPLAIN":
            raise QueryRefused(
                f"{word} is not allowed: analysts run one SELECT, WITH, UNION, DESCRIBE or EXPLAIN"
            )
        rest = tree.expression.name if isinstance(tree.expression, exp.Literal) else ""
        tree = _parse(rest, max_tokens)
        kind = "explain"
    fmt: str | None = None
    if isinstance(tree, _QUERIES):
        format_node = tree.args.get("format")
        if format_node is not None:
            fmt = format_node.name
            tree.set("format", None)
            if not allow_format or kind == "explain":
                raise QueryRefused("FORMAT is not allowed here")
            if fmt not in OUTPUT_FORMATS:
                raise QueryRefused(
                    f"Unknown or refused format {fmt!r}; "
                    f"formats: {', '.join(sorted(OUTPUT_FORMATS))}",
                    code=73,
                    name="UNKNOWN_FORMAT",
                )
    elif isinstance(tree, exp.Describe):
        if kind == "explain":
            raise QueryRefused("EXPLAIN takes a SELECT")
        if not isinstance(tree.this, exp.Table):
            raise QueryRefused("DESCRIBE takes an analyst table")
        kind = "describe"
    else:
        raise QueryRefused(
            f"{type(tree).__name__.upper()} is not allowed: "
            "analysts run one SELECT, WITH, UNION, DESCRIBE or EXPLAIN"
        )
    return tree, kind, fmt


def check_statement(
    sql: str,
    principal: Principal,
    *,
    known_objects: Collection[str] = (),
    allow_format: bool = False,
    allow_params: bool = False,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> CheckedStatement:
    """``sql`` checked for ``principal``, scoped and re-rendered; QueryRefused otherwise."""
    try:
        return _check_statement(
            sql,
            principal,
            known_objects=known_objects,
            allow_format=allow_format,
            allow_params=allow_params,
            max_tokens=max_tokens,
        )
    except RecursionError as exc:
        raise QueryRefused("the statement is nested too deeply; simplify it") from exc


def _check_statement(
    sql: str,
    principal: Principal,
    *,
    known_objects: Collection[str],
    allow_format: bool,
    allow_params: bool,
    max_tokens: int,
) -> CheckedStatement:
    tree, kind, fmt = _statement_tree(sql, allow_format=allow_format, max_tokens=max_tokens)
    checker = _Checker(principal, known_objects=known_objects, allow_params=allow_params)
    checker.check_tree(tree)
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    if principal.role == "tenant":
        if principal.tenant is None:  # pragma: no cover - keys guarantee it
            raise QueryRefused("a tenant key without a tenant")
        _scope_to_tenant(tree, principal.tenant, ctes)
    rendered = _render(tree)
    # the rendering must parse back to a statement that passes and renders to itself
    # (the tenant rewrite adds tokens: the limit applies to what the analyst sent)
    again, _, _ = _statement_tree(rendered, allow_format=False, max_tokens=4 * max_tokens + 1000)
    _Checker(principal, known_objects=known_objects, allow_params=allow_params).check_tree(again)
    if _render(again) != rendered:
        raise QueryRefused("the statement does not survive re-rendering; simplify it")
    prefix = "EXPLAIN " if kind == "explain" else ""
    return CheckedStatement(
        received=sql,
        sql=prefix + rendered,
        kind=kind,
        fmt=fmt,
        tables=frozenset(checker.tables),
    )
