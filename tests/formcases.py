"""Declarations (JSON instances of the forms' schemas) built from the hand-worked award cases.

tests/cases/lanxi-2022.yaml states each case as the engine's facts. A declaration
states some of them as detail-table rows (art. 3 leases, art. 9 trademarks, …), so
here each case becomes the rows that add up to exactly its facts, using the
form spec's own aggregation rules (`derived`), plus placeholders for the columns
that do not enter the computation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from lanxi_xl.facts import coerce
from lanxi_xl.forms import ArticleForm, Field, FormModel, credit_code_check_char, load_model
from lanxi_xl.policy import Clause

MODEL = load_model()
POLICY = MODEL.policy
CASES: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "cases" / "lanxi-2022.yaml").read_text(encoding="utf-8")
)
DQ_NAMES = {d.name for d in POLICY.disqualifications}


def credit_code(n: int = 1) -> str:
    base = f"91330781MA{n:07d}"
    return base + (credit_code_check_char(base) or "")


def common(year: int = 2023, answers: Mapping[str, Any] | None = None, n: int = 1) -> dict[str, Any]:
    """A complete common part; art. 15 answers default to “none” and a 90% pension rate."""
    attestations: dict[str, Any] = {d.name: False for d in POLICY.disqualifications if d.type == "bool"}
    attestations.update({d.name: 0.9 for d in POLICY.disqualifications if d.type != "bool"})
    attestations.update(answers or {})
    return {
        "enterprise_name": f"兰溪测试电子商务有限公司{n}号",
        "credit_code": credit_code(n),
        "contact": "张三",
        "mobile": "13800000000",
        "year": year,
        "bank_account_name": f"兰溪测试电子商务有限公司{n}号",
        "bank_name": "浙江兰溪农村商业银行城区支行",
        "bank_account": "201000123456789",
        "attestations": attestations,
    }


def json_value(spec: Any, raw: Any) -> Any:
    """A case's raw fact as the JSON instance holds it (choice keys, booleans, plain numbers)."""
    value = coerce(spec, raw)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def placeholder(f: Field, n: int) -> Any:
    if f.type == "date":
        return dt.date(2023, 5, 1 + n % 28).isoformat()
    if f.type == "text":
        return f"{f.label}{n + 1}"
    if f.type == "choice":
        return f.options[0].key
    raise AssertionError(f"no placeholder for {f.key} ({f.type})")


def article_data(art: ArticleForm, clause: Clause, facts: Mapping[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for f in art.fields:
        if f.clause == clause.id and f.fact in facts:
            data[f.key] = json_value(clause.facts[f.fact], facts[f.fact])
    for t in art.tables:
        if t.items:
            if t.items not in clause.facts:
                continue
            spec = clause.facts[t.items]
            rows = []
            for n, entry in enumerate(facts.get(t.items, ())):
                entry = entry if isinstance(entry, Mapping) else {next(iter(spec.items)): entry}
                row = {k: json_value(spec.items[k], v) for k, v in entry.items()}
                for c in t.columns:
                    if c.required and c.key not in row:
                        row[c.key] = placeholder(c, n)
                rows.append(row)
            data[t.key] = rows
            continue
        derived = [d for d in art.derived if d.table == t.key and d.clause == clause.id]
        if not derived:
            continue
        # One row per distinct `where` (e.g. office / storage); `max` facts go on every row.
        groups: dict[tuple[Any, ...], dict[str, Any]] = {}
        for d in derived:
            if d.kind != "sum":
                continue
            key = tuple((k, v[0]) for k, v in sorted(d.where.items()))
            row = groups.setdefault(key, dict(key))
            row[d.column] = json_value(clause.facts[d.fact], facts[d.fact])
        rows = list(groups.values())
        for d in derived:
            if d.kind == "max":
                for row in rows:
                    row[d.column] = json_value(clause.facts[d.fact], facts[d.fact])
        for n, row in enumerate(rows):
            for c in t.columns:
                if c.required and c.key not in row:
                    row[c.key] = placeholder(c, n)
        data[t.key] = data.get(t.key, []) + rows
    return data


def instance_for(clause_id: str, facts: Mapping[str, Any], year: int = 2023, n: int = 1) -> dict[str, Any]:
    """A single-article declaration whose facts (after the form's aggregation) are ``facts``."""
    clause = POLICY.clause(clause_id)
    art = MODEL.article(clause.article)
    own = {k: v for k, v in facts.items() if k not in DQ_NAMES}
    answers = {k: json_value(_dq_spec(k), v) for k, v in facts.items() if k in DQ_NAMES}
    return {
        "policy": POLICY.key,
        "template_version": MODEL.template_version,
        "common": common(year, answers, n),
        "articles": {art.key: article_data(art, clause, own)},
    }


def _dq_spec(name: str) -> Any:
    from lanxi_xl.facts import disqualification_specs

    return disqualification_specs(POLICY)[name]


def award_cases() -> list[dict[str, Any]]:
    """The hand-worked cases a declaration can state (no input errors, covered years)."""
    return [c for c in CASES if "error" not in c]


def model() -> FormModel:
    return MODEL
