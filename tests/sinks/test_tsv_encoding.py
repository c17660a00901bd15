"""TabSeparated encoding: escapes checked against the format's rules, written out by hand."""

from __future__ import annotations

import datetime as dt
import enum

import pytest

from agentstream.sinks.clickhouse._tsv import encode_param, encode_rows, format_datetime


class Colour(enum.StrEnum):
    RED = "RED"


def test_scalars() -> None:
    line = encode_rows([(None, True, False, 7, -1.5, "plain", Colour.RED)])
    assert line == "\\N\t1\t0\t7\t-1.5\tplain\tRED\n"


def test_string_escapes() -> None:
    assert encode_rows([("a\tb\nc\\d'e",)]) == "a\\tb\\nc\\\\d'e\n"


def test_bytes_escape_non_printables() -> None:
    assert encode_rows([(b"\x00A\xff\t",)]) == "\\0A\\xFF\\t\n"


def test_datetime_is_utc() -> None:
    local = dt.datetime(2026, 1, 1, 12, 0, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert format_datetime(local) == "2026-01-01 10:00:00.000005"


def test_containers_quote_their_strings() -> None:
    assert encode_rows([(["x'y", "t"], {"k": 1})]) == "['x\\'y','t']\t{'k':1}\n"
    assert encode_param([None, 1.0]) == "[NULL,1.0]"


def test_unsupported_type_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="cannot store a object"):
        encode_rows([(object(),)])
