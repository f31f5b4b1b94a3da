"""The policy data file: loading, checking and the values it holds.

One YAML file per policy (``lanxi_xl/policies/*.yaml``). It is checked twice when
loaded: against ``policy.schema.json`` (shape) and then for references (every fact,
parameter, table and interpretation it names exists). Either failure raises
:class:`PolicyFileError` naming the bad key, e.g. ``clauses.8.params.tiers.value``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
import yaml

from .errors import InputError, PolicyFileError

POLICY_DIR = Path(__file__).with_name("policies")
SCHEMA_PATH = POLICY_DIR / "policy.schema.json"

# Fact types whose values are amounts or measures (Decimal after coercion).
NUMERIC_TYPES = frozenset({"money", "usd", "number", "integer", "rate"})


@dataclass(frozen=True)
class Choice:
    key: str
    label: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class FactSpec:
    """One declared figure, yes/no answer, choice or list of items."""

    name: str
    label: str
    type: str
    unit: str = ""
    help: str = ""
    min: Decimal | None = None
    max: Decimal | None = None
    has_default: bool = False
    default: Any = None
    choices: tuple[Choice, ...] = ()
    items: Mapping[str, FactSpec] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Tier:
    threshold: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Param:
    """A figure of the policy with the words it was taken from."""

    name: str
    value: Decimal | Mapping[str, Decimal] | tuple[Tier, ...]
    unit: str
    quote: str
    word: str = ""
    threshold_unit: str = ""


@dataclass(frozen=True)
class Payable:
    """How often an award may be paid; the registry enforces it across years."""

    kind: str  # once | once_per_choice | per_year | consecutive_years | lifetime_total
    years: int | None = None
    fact: str | None = None
    total: str | None = None
    yearly_cap: str | None = None


@dataclass(frozen=True)
class Clause:
    id: str
    article: int
    clause: int
    title: str
    recipient: str
    text: str
    payable: Payable
    facts: Mapping[str, FactSpec]
    params: Mapping[str, Param]
    conditions: Mapping[str, Any] | None
    award: Mapping[str, Any]
    interpretation: str | None = None

    @property
    def cite(self) -> str:
        """Citation in the form the bureau writes it: 第3条 or 第4条第2款."""
        if self.id == str(self.article):
            return f"第{self.article}条"
        return f"第{self.article}条第{self.clause}款"


@dataclass(frozen=True)
class Interpretation:
    id: str
    article: int
    decision: str


@dataclass(frozen=True)
class Disqualification:
    name: str
    label: str
    quote: str
    word: str = ""  # empty for yes/no flags
    value: Decimal | None = None
    type: str = "bool"


@dataclass(frozen=True)
class OverlapGroup:
    id: str
    label: str
    clauses: tuple[str, ...]
    interpretation: str | None = None


@dataclass(frozen=True)
class Policy:
    id: str
    key: str
    title: str
    issuer: str
    issued: dt.date
    effective_from: dt.date
    effective_until: dt.date | None
    first_year: int
    replaces: str
    text: str
    article: int
    clauses: Mapping[str, Clause]
    interpretations: Mapping[str, Interpretation]
    disqualifications: tuple[Disqualification, ...]
    disqualification_article: int
    disqualification_text: str
    overlap_article: int
    overlap_text: str
    overlap_groups: tuple[OverlapGroup, ...]
    source: str
    # Art. 15 answers as optional facts (absent = none declared); built once per load.
    disqualification_facts: Mapping[str, FactSpec] = field(default_factory=lambda: MappingProxyType({}))

    def clause(self, clause_id: str) -> Clause:
        try:
            return self.clauses[str(clause_id)]
        except KeyError:
            known = "、".join(self.clauses)
            raise InputError(
                "UNKNOWN_CLAUSE",
                f"政策{self.id}中没有条款“{clause_id}”，可用的条款：{known}",
                clause=clause_id,
            ) from None

    def covers_year(self, year: int) -> bool:
        if year < self.first_year:
            return False
        return self.effective_until is None or year <= self.effective_until.year

    @property
    def effective_from_zh(self) -> str:
        d = self.effective_from
        return f"{d.year}年{d.month}月{d.day}日"


# --- loading -------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """Safe YAML with exact decimals, dates as text and duplicate keys refused."""


def _construct_decimal(loader: _Loader, node: yaml.ScalarNode) -> Decimal:
    return Decimal(loader.construct_scalar(node).replace("_", ""))


def _construct_timestamp(loader: _Loader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@cache
def _schema_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def _key_path(parts: Iterator[Any] | Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(文件顶层)"


def _fail(path: Path, key: str, problem: str) -> PolicyFileError:
    return PolicyFileError(
        "POLICY_FILE_INVALID",
        f"政策数据文件 {path.name} 有误：键 {key} {problem}",
        key=key,
        path=str(path),
    )


def load_policy(path: str | Path) -> Policy:
    """Read, check and build one policy file; any defect raises PolicyFileError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyFileError(
            "POLICY_FILE_UNREADABLE", f"无法读取政策数据文件 {path}：{exc}", path=str(path)
        ) from None
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"第{mark.line + 1}行" if mark else ""
        raise PolicyFileError(
            "POLICY_FILE_SYNTAX",
            f"政策数据文件 {path.name} {where}格式错误：{getattr(exc, 'problem', exc)}",
            key=where,
            path=str(path),
        ) from None
    errors = sorted(_schema_validator().iter_errors(raw), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        # The deepest error names the key a person must fix; oneOf wrappers are vaguer,
        # so their branches' errors (``context``) are candidates too.
        def flatten(errs: Iterable[jsonschema.ValidationError]) -> Iterator[jsonschema.ValidationError]:
            for e in errs:
                yield e
                yield from flatten(e.context or ())

        err = max(flatten(errors), key=lambda e: len(e.absolute_path))
        raise _fail(path, _key_path(err.absolute_path), f"不符合政策文件格式：{err.message}")
    return _build(path, raw)


def _dec(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(value)


def _fact(name: str, raw: Mapping[str, Any]) -> FactSpec:
    return FactSpec(
        name=name,
        label=raw["label"],
        type=raw["type"],
        unit=raw.get("unit", ""),
        help=raw.get("help", ""),
        min=_dec(raw["min"]) if "min" in raw else None,
        max=_dec(raw["max"]) if "max" in raw else None,
        has_default="default" in raw,
        default=raw.get("default"),
        choices=tuple(
            Choice(k, c["label"], tuple(c.get("aliases", ()))) for k, c in raw.get("choices", {}).items()
        ),
        items=MappingProxyType({k: _fact(k, v) for k, v in raw.get("items", {}).items()}),
    )


def _param(name: str, raw: Mapping[str, Any]) -> Param:
    value = raw["value"]
    built: Decimal | Mapping[str, Decimal] | tuple[Tier, ...]
    if isinstance(value, list):
        built = tuple(Tier(_dec(t["from"]), _dec(t["amount"])) for t in value)
    elif isinstance(value, dict):
        built = MappingProxyType({k: _dec(v) for k, v in value.items()})
    else:
        built = _dec(value)
    return Param(name, built, raw["unit"], raw["quote"], raw.get("word", ""), raw.get("threshold_unit", ""))


def _build(path: Path, raw: Mapping[str, Any]) -> Policy:
    meta = raw["policy"]
    interpretations = {i["id"]: Interpretation(i["id"], i["article"], i["decision"]) for i in raw["interpretations"]}
    clauses: dict[str, Clause] = {}
    for cid, c in raw["clauses"].items():
        p = c["payable"]
        clauses[cid] = Clause(
            id=cid,
            article=c["article"],
            clause=c["clause"],
            title=c["title"],
            recipient=c["recipient"],
            text=c["text"],
            payable=Payable(p["kind"], p.get("years"), p.get("fact"), p.get("total"), p.get("yearly_cap")),
            facts=MappingProxyType({k: _fact(k, v) for k, v in c["facts"].items()}),
            params=MappingProxyType({k: _param(k, v) for k, v in c["params"].items()}),
            conditions=c.get("conditions"),
            award=c["award"],
            interpretation=c.get("interpretation"),
        )
    dq = raw["disqualifications"]
    disqualifications = tuple(Disqualification(k, v["label"], v["quote"]) for k, v in dq["flags"].items()) + tuple(
        Disqualification(k, v["label"], v["quote"], v["word"], _dec(v["value"]), v["type"])
        for k, v in dq["thresholds"].items()
    )
    ov = raw["overlap"]
    policy = Policy(
        id=meta["id"],
        key=meta["key"],
        title=meta["title"],
        issuer=meta["issuer"],
        issued=dt.date.fromisoformat(meta["issued"]),
        effective_from=dt.date.fromisoformat(meta["effective_from"]),
        effective_until=dt.date.fromisoformat(meta["effective_until"]) if meta["effective_until"] else None,
        first_year=meta["first_year"],
        replaces=meta["replaces"],
        text=meta["text"],
        article=meta["article"],
        clauses=MappingProxyType(clauses),
        interpretations=MappingProxyType(interpretations),
        disqualifications=disqualifications,
        disqualification_article=dq["article"],
        disqualification_text=dq["text"],
        overlap_article=ov["article"],
        overlap_text=ov["text"],
        overlap_groups=tuple(
            OverlapGroup(g["id"], g["label"], tuple(g["clauses"]), g.get("interpretation")) for g in ov["groups"]
        ),
        source=str(path),
        disqualification_facts=MappingProxyType(
            {d.name: FactSpec(d.name, d.label, d.type, "比例" if d.type == "rate" else "") for d in disqualifications}
        ),
    )
    _check_references(path, raw, policy)
    return policy


def _check_references(path: Path, raw: Mapping[str, Any], policy: Policy) -> None:
    """Everything the schema cannot say: names that must point at something."""
    known_interp = set(policy.interpretations)

    def interp(key: str, node: Mapping[str, Any]) -> None:
        if "interpretation" in node and node["interpretation"] not in known_interp:
            raise _fail(path, f"{key}.interpretation", f"引用了不存在的解释“{node['interpretation']}”")

    meta = policy
    if meta.effective_until is not None and meta.effective_until <= meta.effective_from:
        raise _fail(path, "policy.effective_until", "必须晚于 effective_from")
    if meta.first_year < meta.effective_from.year:
        raise _fail(path, "policy.first_year", "不能早于生效日期所在年度")
    for name, t in raw["disqualifications"]["thresholds"].items():
        interp(f"disqualifications.thresholds.{name}", t)
    for i, g in enumerate(raw["overlap"]["groups"]):
        interp(f"overlap.groups[{i}]", g)
        for j, cid in enumerate(g["clauses"]):
            if cid not in policy.clauses:
                raise _fail(path, f"overlap.groups[{i}].clauses[{j}]", f"引用了不存在的条款“{cid}”")

    for cid, clause in policy.clauses.items():
        base = f"clauses.{cid}"
        rc = raw["clauses"][cid]
        interp(base, rc)
        if clause.id != str(clause.article) and clause.id != f"{clause.article}.{clause.clause}":
            raise _fail(path, base, f"的编号应为“{clause.article}”或“{clause.article}.{clause.clause}”")
        for pname, param in clause.params.items():
            if isinstance(param.value, tuple):
                thresholds = [t.threshold for t in param.value]
                if thresholds != sorted(set(thresholds)):
                    raise _fail(path, f"{base}.params.{pname}.value", "的档次必须按起点从小到大排列且不重复")
        pay = clause.payable
        for attr in ("total", "yearly_cap"):
            ref = getattr(pay, attr)
            if ref is not None and ref not in clause.params:
                raise _fail(path, f"{base}.payable.{attr}", f"引用了不存在的参数“{ref}”")
        if pay.fact is not None and pay.fact not in clause.facts:
            raise _fail(path, f"{base}.payable.fact", f"引用了不存在的事实“{pay.fact}”")
        for fname, spec in clause.facts.items():
            if spec.type == "items" and not spec.items:
                raise _fail(path, f"{base}.facts.{fname}.items", "不能为空")
        if rc.get("conditions") is not None:
            _check_condition(path, f"{base}.conditions", rc["conditions"], clause, known_interp)
        _check_expr(path, f"{base}.award", rc["award"], clause, None)


def _check_condition(path: Path, key: str, node: Mapping[str, Any], clause: Clause, interps: set[str]) -> None:
    if "interpretation" in node and node["interpretation"] not in interps:
        raise _fail(path, f"{key}.interpretation", f"引用了不存在的解释“{node['interpretation']}”")
    for group in ("all", "any"):
        if group in node:
            for i, sub in enumerate(node[group]):
                _check_condition(path, f"{key}.{group}[{i}]", sub, clause, interps)
            return
    if "fact" in node:
        spec = clause.facts.get(node["fact"])
        if spec is None:
            raise _fail(path, f"{key}.fact", f"引用了不存在的事实“{node['fact']}”")
        if node["word"] == "是":
            if spec.type != "bool":
                raise _fail(path, f"{key}.word", "“是”只能用于是/否事实")
        elif "param" not in node:
            raise _fail(path, key, "缺少 param")
        elif node["param"] not in clause.params or not isinstance(clause.params[node["param"]].value, Decimal):
            raise _fail(path, f"{key}.param", f"引用了不存在或非数值的参数“{node['param']}”")
        return
    _check_expr(path, f"{key}.left", node["left"], clause, None)
    _check_expr(path, f"{key}.right", node["right"], clause, None)


def _check_expr(path: Path, key: str, node: Mapping[str, Any], clause: Clause, item_of: str | None) -> None:
    (kind, arg), = node.items()
    where = f"{key}.{kind}"
    if kind == "fact":
        if arg not in clause.facts or clause.facts[arg].type not in NUMERIC_TYPES | {"choice"}:
            raise _fail(path, where, f"引用了不存在或非数值的事实“{arg}”")
    elif kind == "param":
        if arg not in clause.params or not isinstance(clause.params[arg].value, Decimal):
            raise _fail(path, where, f"引用了不存在或非数值的参数“{arg}”")
    elif kind == "item":
        if item_of is None or arg not in clause.facts[item_of].items:
            raise _fail(path, where, f"引用了不存在的明细字段“{arg}”（只能在 sum_each 内使用）")
    elif kind in ("sum", "product", "quotient"):
        for i, sub in enumerate(arg):
            _check_expr(path, f"{where}[{i}]", sub, clause, item_of)
    elif kind == "cap":
        _check_expr(path, f"{where}.of", arg["of"], clause, item_of)
        _check_expr(path, f"{where}.limit", arg["limit"], clause, item_of)
    elif kind == "remaining":
        _check_expr(path, f"{where}.total", arg["total"], clause, item_of)
        _check_expr(path, f"{where}.used", arg["used"], clause, item_of)
    elif kind in ("tiers", "lookup"):
        _check_expr(path, f"{where}.of", arg["of"], clause, item_of)
        table = clause.params.get(arg["table"])
        wanted = tuple if kind == "tiers" else Mapping
        if table is None or not isinstance(table.value, wanted):
            raise _fail(path, f"{where}.table", f"引用了不存在或类型不符的参数表“{arg['table']}”")
        if kind == "lookup":
            of = arg["of"].get("fact")
            spec = clause.facts.get(of) if of else None
            if spec is None or spec.type != "choice":
                raise _fail(path, f"{where}.of", "查表的对象必须是选择类事实")
            if set(table.value) != {c.key for c in spec.choices}:  # type: ignore[arg-type]
                raise _fail(path, f"{where}.table", "参数表的键必须与选项一一对应")
    elif kind == "sum_each":
        spec = clause.facts.get(arg["items"])
        if spec is None or spec.type != "items":
            raise _fail(path, f"{where}.items", f"引用了不存在的明细事实“{arg['items']}”")
        if "where" in arg and (arg["where"] not in spec.items or spec.items[arg["where"]].type != "bool"):
            raise _fail(path, f"{where}.where", f"筛选字段“{arg['where']}”必须是明细中的是/否字段")
        _check_expr(path, f"{where}.of", arg["of"], clause, arg["items"])


def find_node(node: Any, wanted: Callable[[Mapping[str, Any]], bool]) -> Mapping[str, Any] | None:
    """The first mapping of an expression tree (depth first) for which ``wanted`` is true."""
    if isinstance(node, Mapping):
        if wanted(node):
            return node
        children: Iterable[Any] = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = find_node(child, wanted)
        if found is not None:
            return found
    return None


# --- which policy applies ----------------------------------------------------------


@cache
def all_policies() -> tuple[Policy, ...]:
    """Every policy file shipped in ``lanxi_xl/policies``, oldest first."""
    found = [load_policy(p) for p in sorted(POLICY_DIR.glob("*.yaml"))]
    return tuple(sorted(found, key=lambda p: p.effective_from))


def policy_for_year(year: object, policies: tuple[Policy, ...] | None = None) -> Policy:
    """The policy that governs declarations for ``year`` (performance of that whole year)."""
    policies = policies if policies is not None else all_policies()
    y = parse_year(year)
    for policy in policies:
        if policy.covers_year(y):
            return policy
    first = policies[0]
    if y < first.first_year:
        raise InputError(
            "YEAR_BEFORE_POLICY",
            f"申报年度{y}年早于政策生效：{first.id}《{first.title}》自{first.effective_from_zh}起实行，"
            f"适用{first.first_year}年及以后年度的申报",
            year=y,
        )
    last = policies[-1]
    until = last.effective_until
    raise InputError(
        "YEAR_AFTER_POLICY",
        f"申报年度{y}年不在现行政策范围内：{last.id}已于"
        f"{until.year}年{until.month}月{until.day}日停止执行，请使用接续政策" if until else
        f"申报年度{y}年没有适用的政策",
        year=y,
    )


def parse_year(year: object) -> int:
    value: Any = year
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1900 <= value <= 2999:
        raise InputError("INVALID_YEAR", f"申报年度应为四位数年份，如2023，收到“{year}”", year=year)
    return value


def current_policy(today: dt.date | None = None) -> Policy:
    """The policy in force on ``today`` (the newest one that has taken effect)."""
    return _policy_on(today or dt.date.today())


@cache
def _policy_on(today: dt.date) -> Policy:
    in_force = [p for p in all_policies() if p.effective_from <= today]
    return in_force[-1] if in_force else all_policies()[0]
