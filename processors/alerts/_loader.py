"""The rule file: YAML in, validated :class:`RuleSet` out, every problem named.

A rule file is a YAML mapping with ``rules`` (a list) and optional ``defaults``
(keys every rule gets unless it sets them itself); see :mod:`processors.alerts._rules`
for the keys. Any problem raises :class:`~agentstream.core.errors.AlertRuleError` naming
the file, the rule id (``#n`` when the rule has none) and the field, all at once.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agentstream.core.config import AlertSettings, Settings
from agentstream.core.errors import AlertRuleError
from agentstream.processors.alerts._rules import BUILTIN_CHANNELS, Rule, RuleSet

__all__ = [
    "DEFAULT_RULES_FILE",
    "known_channels",
    "load_rules",
    "parse_rules",
    "rules_from_settings",
]

#: the rule file shipped with agentstream, used when ``alerts.rules_path`` is unset
DEFAULT_RULES_FILE = "default_rules.yaml"

# -- loading --------------------------------------------------------------------------------


class _NoDuplicatesLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping."""


def _construct_mapping(loader: _NoDuplicatesLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_NoDuplicatesLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)

_TOP_LEVEL = {"defaults", "rules"}


def _field_name(loc: Sequence[int | str]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1]}[{part}]" if parts else f"[{part}]"]
        else:
            parts.append(part)
    return ".".join(parts)


def _rule_label(index: int, raw: Any) -> str:
    rule_id = raw.get("id") if isinstance(raw, Mapping) else None
    if isinstance(rule_id, str) and rule_id.strip():
        return rule_id
    return f"#{index + 1}"


def parse_rules(
    data: Any,
    source: str = "<rules>",
    *,
    known_channels: Collection[str] | None = None,
    resolutions: Collection[str] | None = None,
    horizon_s: float = 0.0,
) -> RuleSet:
    """Validate a parsed rule document (``{"defaults": ..., "rules": [...]}``).

    ``known_channels`` / ``resolutions``: when given, a rule routing to another
    channel or reading a resolution the rollups do not produce is refused.
    ``horizon_s``: how long a window may still be corrected (see :class:`RuleSet`).
    Raises :class:`AlertRuleError` listing every problem.
    """
    problems: list[tuple[str, str, str]] = []
    if not isinstance(data, Mapping):
        raise AlertRuleError(source, [("", "", "must be a mapping with a 'rules' list")])
    problems += [("", str(key), "unknown top-level key") for key in data if key not in _TOP_LEVEL]
    defaults = data.get("defaults")
    defaults = {} if defaults is None else defaults
    raw_rules = data.get("rules")
    if not isinstance(defaults, Mapping):
        problems.append(("", "defaults", "must be a mapping"))
        defaults = {}
    elif "id" in defaults:
        problems.append(("", "defaults.id", "a default id makes no sense"))
    if not isinstance(raw_rules, list):
        problems.append(("", "rules", "must be a list of rules"))
        raise AlertRuleError(source, problems)

    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_rules):
        label = _rule_label(index, raw)
        if not isinstance(raw, Mapping):
            problems.append((label, "", "must be a mapping"))
            continue
        try:
            rule = Rule.model_validate({**defaults, **raw})
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                field = _field_name(err["loc"]) or "rule"
                message = str(err["msg"]).removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    message = "unknown field"
                if field == "rule" and message.startswith("threshold: "):
                    field, message = "threshold", message.removeprefix("threshold: ")
                problems.append((label, field, message))
            continue
        if rule.id in seen:
            problems.append((label, "id", f"duplicate id (also rule #{seen[rule.id] + 1})"))
            continue
        seen[rule.id] = index
        if known_channels is not None:
            for name in rule.channels:
                if name not in known_channels:
                    known = ", ".join(sorted(known_channels))
                    message = f"unknown channel {name!r}; known: {known}"
                    problems.append((label, "channels", message))
        if resolutions is not None and rule.resolution not in resolutions:
            problems.append(
                (label, "resolution", f"rollups are not computed at {rule.resolution!r}")
            )
        rules.append(rule)
    if problems:
        raise AlertRuleError(source, problems)
    return RuleSet(rules, source, horizon_s=horizon_s)


def load_rules(
    path: Path | str | None = None,
    *,
    known_channels: Collection[str] | None = None,
    resolutions: Collection[str] | None = None,
    horizon_s: float = 0.0,
) -> RuleSet:
    """Read and validate a rule file (None: the packaged ``default_rules.yaml``)."""
    if path is None:
        ref = resources.files("agentstream.processors.alerts") / DEFAULT_RULES_FILE
        text, source = ref.read_text(encoding="utf-8"), f"<packaged {DEFAULT_RULES_FILE}>"
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise AlertRuleError(source, [("", "", f"cannot read: {exc}")]) from exc
    try:
        data = yaml.load(text, Loader=_NoDuplicatesLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise AlertRuleError(source, [("", "", _yaml_problem(exc))]) from exc
    return parse_rules(
        data,
        source,
        known_channels=known_channels,
        resolutions=resolutions,
        horizon_s=horizon_s,
    )


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = " ".join(f"{exc.context or ''} {exc.problem or ''}".split())
        return f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"not valid YAML: {' '.join(str(exc).split())}"


def known_channels(settings: AlertSettings) -> set[str]:
    """Channel names rules may use: the built-ins plus ``settings.channels``."""
    return {*BUILTIN_CHANNELS, *settings.channels}


def rules_from_settings(settings: Settings) -> RuleSet:
    """The rules ``settings.alerts.rules_path`` names (or the packaged defaults), checked
    against the configured channels and the rollup resolutions, evaluated on windows the
    rollups may correct for ``rollups.horizon_s``."""
    return load_rules(
        settings.alerts.rules_path,
        known_channels=known_channels(settings.alerts),
        resolutions=settings.rollups.resolutions,
        horizon_s=settings.rollups.horizon_s,
    )
