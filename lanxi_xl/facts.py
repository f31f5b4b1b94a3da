"""Turning what a person typed into the values the rules compute with.

Every refusal is an :class:`InputError` that names the field by its Chinese label,
quotes what was found and says what is expected. Nothing is guessed: 85 for an
occupancy rate is refused, not read as 85%.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from .errors import InputError
from .money import to_decimal
from .policy import Clause, FactSpec, Policy

TRUE_WORDS = frozenset({"是", "有", "y", "yes", "true", "1", "√", "✓"})
FALSE_WORDS = frozenset({"否", "无", "没有", "n", "no", "false", "0", "×"})

_EXPECT = {
    "money": "以元为单位的数字（如 600000，不写“万”“元”或千位分隔符）",
    "usd": "以美元为单位的数字（如 1200000，不写“万”“美元”或千位分隔符）",
    "number": "数字",
    "integer": "整数",
    "rate": "0 到 1 之间的小数（如 85% 填 0.85）",
}


def is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def coerce(spec: FactSpec, raw: object) -> Any:
    """The value of one fact, checked against its spec (blank handled by the caller)."""
    if spec.type == "bool":
        return _bool(spec, raw)
    if spec.type == "choice":
        return _choice(spec, raw)
    if spec.type == "items":
        return _items(spec, raw)
    return _number(spec, raw)


def _bad(code: str, spec: FactSpec, raw: object, expected: str) -> InputError:
    return InputError(code, f"「{spec.label}」应为{expected}，收到“{raw}”", field=spec.name, value=raw)


def _number(spec: FactSpec, raw: object) -> Decimal:
    text = raw.strip() if isinstance(raw, str) else raw
    value = None
    if spec.type == "rate" and isinstance(text, str) and text.endswith("%"):
        pct = to_decimal(text[:-1])
        value = pct / 100 if pct is not None else None
    else:
        value = to_decimal(raw)
    if value is None:
        raise _bad("NOT_A_NUMBER", spec, raw, _EXPECT[spec.type])
    if value < 0:
        raise _bad("NEGATIVE_VALUE", spec, raw, "不小于 0 的" + _EXPECT[spec.type])
    if spec.type == "rate" and value > 1:
        raise InputError(
            "RATE_OUT_OF_RANGE",
            f"「{spec.label}」应为 0 到 1 之间的小数（如 85% 填 0.85 或 85%），收到“{raw}”",
            field=spec.name,
            value=raw,
        )
    if spec.type == "integer" and value != value.to_integral_value():
        raise _bad("NOT_AN_INTEGER", spec, raw, "整数")
    if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
        lo = spec.min if spec.min is not None else "0"
        hi = f"至{spec.max}" if spec.max is not None else "以上"
        raise _bad("OUT_OF_RANGE", spec, raw, f"{lo}{hi}之间的{_EXPECT[spec.type]}（单位：{spec.unit}）")
    return value


def _bool(spec: FactSpec, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, (int, float, Decimal)) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in TRUE_WORDS:
        return True
    if isinstance(raw, str) and raw.strip().lower() in FALSE_WORDS:
        return False
    raise _bad("NOT_A_BOOLEAN", spec, raw, "“是”或“否”")


def choice_key(spec: FactSpec, raw: object) -> str | None:
    text = str(raw).strip().lower() if raw is not None else ""
    for choice in spec.choices:
        names = {choice.key, choice.label, *choice.aliases}
        if text in {n.lower() for n in names}:
            return choice.key
    return None


def _choice(spec: FactSpec, raw: object) -> str:
    key = choice_key(spec, raw)
    if key is None:
        options = "、".join(f"“{c.label}”" for c in spec.choices)
        raise InputError(
            "UNKNOWN_CHOICE", f"「{spec.label}」应为{options}之一，收到“{raw}”", field=spec.name, value=raw
        )
    return key


def _items(spec: FactSpec, raw: object) -> tuple[Mapping[str, Any], ...]:
    if isinstance(raw, (str, bytes)) or not hasattr(raw, "__iter__"):
        raw = [raw]
    first = next(iter(spec.items))
    rows = []
    for n, entry in enumerate(raw, start=1):  # type: ignore[union-attr]
        # A bare number fills the first item field (e.g. a column of event costs).
        row = entry if isinstance(entry, Mapping) else {first: entry}
        if all(is_blank(v) for v in row.values()):
            continue
        try:
            rows.append(coerce_all(spec.items, row))
        except InputError as exc:
            raise InputError(exc.code, f"「{spec.label}」第{n}行：{exc.message}", row=n, **exc.details) from None
    return tuple(rows)


def coerce_all(specs: Mapping[str, FactSpec], raw: Mapping[str, object]) -> dict[str, Any]:
    """Every fact of ``specs`` from ``raw``; unknown names and missing facts are refused."""
    unknown = [k for k in raw if k not in specs]
    if unknown:
        known = "、".join(specs)
        raise InputError("UNKNOWN_FACT", f"未知的申报项“{unknown[0]}”，可用的申报项：{known}", field=unknown[0])
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        given = raw.get(name)
        if is_blank(given):
            if not spec.has_default:
                raise InputError("MISSING_FACT", f"缺少「{spec.label}」（{name}）", field=name)
            given = spec.default
        values[name] = coerce(spec, given)
    return values


def disqualification_specs(policy: Policy) -> Mapping[str, FactSpec]:
    """Art. 15 answers as optional facts: absent means the enterprise declared none."""
    return policy.disqualification_facts


def split_facts(policy: Policy, clause: Clause, raw: Mapping[str, object]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Coerce ``raw`` into (clause facts, art. 15 answers that were given)."""
    dq_specs = disqualification_specs(policy)
    if not any(k in dq_specs for k in raw):
        return coerce_all(clause.facts, raw), {}
    own = {k: v for k, v in raw.items() if k not in dq_specs}
    answers = {k: coerce(dq_specs[k], v) for k, v in raw.items() if k in dq_specs and not is_blank(v)}
    return coerce_all(clause.facts, own), answers
