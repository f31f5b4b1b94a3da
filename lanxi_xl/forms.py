"""Declaration forms (申报表): the field spec, its layout, JSON Schemas and read-back.

One YAML spec per policy (``lanxi_xl/forms/<policy key>.yaml``) adds layout to the
policy data: sheets, detail tables, how a table adds up to the engine's facts and the
common part of every declaration. Labels, units, help texts and limits of the clause
facts are taken from the policy (``FactSpec``), never repeated in the spec.

:func:`load_model` turns spec + policy into a frozen :class:`FormModel` that knows, for
every field, its sheet, cell, label, type and JSON pointer. Everything else is derived
from that model: the JSON Schemas (:func:`build_schemas`), the workbooks
(:mod:`lanxi_xl.templates`), reading a returned workbook back into a JSON instance
(:func:`read_instance`) and the engine's facts for one clause (:func:`facts_for`).

JSON instance shape (the same for a single-article workbook and the combined one, so a
cell has one JSON pointer whatever workbook it is in)::

    {"policy": "lanxi-2022", "template_version": "2022.1",
     "common": {"enterprise_name": ..., "attestations": {"dishonest": false, ...}},
     "articles": {"8": {"usd_sales": 1200000}}}
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema
import yaml

from . import credit_code
from .errors import InputError, LanxiError
from .money import format_rate, to_decimal
from .policy import NUMERIC_TYPES, Clause, FactSpec, Policy, all_policies

FORMS_DIR = Path(__file__).with_name("forms")

# Types a form field can have: the policy's fact types plus the common part's own.
POLICY_TYPES = frozenset({"money", "usd", "number", "integer", "rate", "bool", "choice"})
FORM_TYPES = POLICY_TYPES | {"text", "date", "credit_code", "mobile", "year"}
YES, NO = "是", "否"

# GB 32100-2015 统一社会信用代码: 31 characters (no I, O, S, V, Z); weights 3^i mod 31.
CREDIT_CODE_CHARS = credit_code.CHARS
CREDIT_CODE_WEIGHTS = credit_code.WEIGHTS
CREDIT_CODE_PATTERN = credit_code.PATTERN
MOBILE_PATTERN = "^1[3-9][0-9]{9}$"
DATE_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
CREDIT_CODE_FORMAT = "gb32100-credit-code"
# Control characters cannot be stored in an xlsx cell (XML 1.0); tab and newline can.
NO_CONTROL_PATTERN = "^[^\\u0000-\\u0008\\u000B-\\u001F]*$"

# Sheet layout (columns are the same on every article sheet; see lanxi_xl.templates).
LABEL_COL, INPUT_COL, UNIT_COL, HELP_COL = "B", "C", "D", "E"
TABLE_FIRST_COL = 2  # B: detail tables start right of the 序号 column
HELPER_FIRST_COL = 10  # J: hidden helper columns of detail tables
LISTS_SHEET, META_SHEET = "_lists", "_meta"
GENERATOR = "lanxi-xl"  # the stamp's generator on every workbook this package writes
# The stamp of an exported ledger: ours, and not a declaration (a ledger saved into a
# folder under review is passed over, not recorded as a bad return).
LEDGER_STAMP: Mapping[str, str] = MappingProxyType({"generator": GENERATOR, "article": "ledger"})


class FormSpecError(LanxiError):
    """The form spec file is malformed or does not fit the policy data."""


# --- the model -----------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    key: str  # in the JSON instance
    label: str  # in the workbook (what the dropdown shows)


@dataclass(frozen=True)
class Field:
    """One input cell (a scalar field) or one column of a detail table."""

    key: str
    label: str
    type: str
    unit: str = ""
    help: str = ""
    required: bool = True
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    options: tuple[Option, ...] = ()
    max_length: int | None = None
    pattern: str | None = None
    fact: str | None = None  # the engine fact (or item fact) this field holds
    clause: str | None = None  # the clause whose fact it is (None: common part, table columns)
    sheet: str = ""
    cell: str = ""  # "C8"; for a table column, the column letter ("E")
    pointer: str = ""  # "/articles/8/usd_sales"; for a table column, relative ("cost")
    name: str = ""  # sheet-scoped defined name

    def option_label(self, key: str) -> str | None:
        return next((o.label for o in self.options if o.key == key), None)

    def option_key(self, label: str) -> str | None:
        return next((o.key for o in self.options if o.label == label), None)


@dataclass(frozen=True)
class Table:
    """A detail table: ``rows`` input rows from ``first_row``, one column per field."""

    key: str
    label: str
    help: str
    sheet: str
    pointer: str  # "/articles/7/events"
    first_row: int
    rows: int
    columns: tuple[Field, ...]
    items: str | None = None  # the engine's items fact the rows map to
    min_items: int = 1
    item_column: str | None = None  # visible per-row award column (sum_each tables)
    helper_columns: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # fact -> col

    @property
    def last_row(self) -> int:
        return self.first_row + self.rows - 1

    def column(self, key: str) -> Field:
        return next(c for c in self.columns if c.key == key)

    def cell(self, index: int, key: str) -> str:
        """The cell of row ``index`` (0-based) in column ``key``."""
        return f"{self.column(key).cell}{self.first_row + index}"

    def range(self, key_or_col: str) -> str:
        col = next((c.cell for c in self.columns if c.key == key_or_col), key_or_col)
        return f"${col}${self.first_row}:${col}${self.last_row}"

    @property
    def input_range(self) -> str:
        first, last = self.columns[0].cell, self.columns[-1].cell
        return f"${first}${self.first_row}:${last}${self.last_row}"


@dataclass(frozen=True)
class Derived:
    """An engine fact computed from a detail table (sum or max of a column)."""

    fact: str
    label: str
    type: str
    unit: str
    help: str
    clause: str
    table: str
    kind: str  # sum | max
    column: str
    where: Mapping[str, tuple[str, ...]]
    sheet: str
    cell: str
    name: str


@dataclass(frozen=True)
class ArticleForm:
    article: int
    key: str  # "8"
    title: str
    sheet: str
    clauses: tuple[str, ...]
    fields: tuple[Field, ...]
    tables: tuple[Table, ...]
    derived: tuple[Derived, ...]
    estimate_cell: str
    clause_cells: Mapping[str, str]  # multi-clause articles: clause id -> cell of its part
    status_cell: str
    schema_id: str
    first_row_of: Mapping[str, int]  # layout anchors the workbook writer uses

    def table(self, key: str) -> Table:
        return next(t for t in self.tables if t.key == key)

    def fact_cell(self, fact: str) -> str:
        """Absolute reference of the cell that holds an engine fact on this sheet."""
        for f in self.fields:
            if f.fact == fact:
                return absolute(f.cell)
        for d in self.derived:
            if d.fact == fact:
                return absolute(d.cell)
        raise KeyError(fact)

    def key_fields(self, clause_id: str) -> tuple[Field, ...]:
        """The inputs whose presence means the clause is declared (required, no default)."""
        return tuple(f for f in self.fields if f.clause == clause_id and f.required)


@dataclass(frozen=True)
class FormModel:
    policy: Policy
    template_version: str
    schema_base: str
    cover_sheet: str
    cover_title: str
    instructions: tuple[str, ...]
    common_title: str
    common: tuple[Field, ...]
    attestation_title: str
    attestation_prompt: str
    attestations: tuple[Field, ...]
    summary_title: str
    summary_first_row: int
    articles: Mapping[str, ArticleForm]
    # Dropdown options by list id (each workbook puts the lists it needs on its _lists sheet).
    list_values: Mapping[str, tuple[str, ...]]
    source: str

    def schema_id(self, name: str) -> str:
        return f"{self.schema_base}/{self.policy.key}/{self.template_version}/{name}.json"

    def article(self, key: object) -> ArticleForm:
        text = str(key).strip()
        if text not in self.articles:
            raise InputError(
                "UNKNOWN_ARTICLE",
                f"没有第“{key}”条的申报表，可用的条款：{'、'.join(self.articles)}（或 all 表示全部条款）",
                article=key,
            )
        return self.articles[text]

    @property
    def all_fields(self) -> tuple[Field, ...]:
        return self.common + self.attestations

    def layout_digest(self) -> str:
        """sha256 of every (pointer, sheet, cell, type): the layout a template version stands for."""
        rows: list[list[str]] = [[f.pointer, f.sheet, f.cell, f.type] for f in self.all_fields]
        for art in self.articles.values():
            rows += [[f.pointer, f.sheet, f.cell, f.type] for f in art.fields]
            for t in art.tables:
                rows += [[f"{t.pointer}/*/{c.key}", t.sheet, f"{c.cell}{t.first_row}:{c.cell}{t.last_row}", c.type]
                         for c in t.columns]
            rows.append([f"#/estimate/{art.key}", art.sheet, art.estimate_cell, "money"])
        text = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def absolute(cell: str) -> str:
    m = re.fullmatch(r"([A-Z]+)(\d+)", cell)
    assert m, cell
    return f"${m.group(1)}${m.group(2)}"


def col_letter(index: int) -> str:
    text = ""
    while index:
        index, rem = divmod(index - 1, 26)
        text = chr(65 + rem) + text
    return text


def list_id(f: Field) -> str:
    if f.type == "bool":
        return "yes_no"
    return f"{f.sheet}:{f.key}"


# --- loading the spec ----------------------------------------------------------------


def _bad(path: Path, key: str, problem: str) -> FormSpecError:
    return FormSpecError("FORM_SPEC_INVALID", f"申报表配置文件 {path.name} 有误：键 {key} {problem}", key=key)


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def fact_field(spec: FactSpec, **layout: Any) -> Field:
    """A field whose label, type, unit, help and limits come from the policy data."""
    minimum = spec.min if spec.min is not None else (Decimal(0) if spec.type in NUMERIC_TYPES else None)
    maximum = spec.max if spec.max is not None else (Decimal(1) if spec.type == "rate" else None)
    return Field(
        key=spec.name,
        label=spec.label,
        type=spec.type,
        unit=spec.unit if spec.type != "rate" else "",
        help=spec.help,
        required=not spec.has_default,
        minimum=minimum,
        maximum=maximum,
        options=tuple(Option(c.key, c.label) for c in spec.choices),
        fact=spec.name,
        **layout,
    )


def _from_spec(path: Path, where: str, raw: Mapping[str, Any], **layout: Any) -> Field:
    ftype = raw.get("type")
    if ftype not in FORM_TYPES:
        raise _bad(path, f"{where}.type", f"应为 {'、'.join(sorted(FORM_TYPES))} 之一，收到“{ftype}”")
    if ftype == "choice" and not raw.get("choices"):
        raise _bad(path, f"{where}.choices", "选择类字段必须列出选项")
    minimum = _dec(raw.get("min"))
    if minimum is None and ftype in NUMERIC_TYPES:
        minimum = Decimal(0)
    return Field(
        key=raw["key"],
        label=raw["label"],
        type=ftype,
        unit=raw.get("unit", ""),
        help=raw.get("help", ""),
        required=raw.get("required", True),
        minimum=minimum,
        maximum=_dec(raw.get("max")) if ftype != "rate" else Decimal(1),
        options=tuple(Option(k, v) for k, v in (raw.get("choices") or {}).items()),
        max_length=raw.get("max_length"),
        pattern=raw.get("pattern"),
        **layout,
    )


def spec_path(policy: Policy) -> Path:
    return FORMS_DIR / f"{policy.key}.yaml"


@cache
def load_model(policy_key: str | None = None) -> FormModel:
    """The form model of a policy (default: the newest policy that has a form spec)."""
    policies = {p.key: p for p in all_policies()}
    if policy_key is None:
        with_spec = [p for p in all_policies() if spec_path(p).is_file()]
        if not with_spec:
            raise FormSpecError("FORM_SPEC_MISSING", f"{FORMS_DIR} 中没有申报表配置文件")
        policy = with_spec[-1]
    elif policy_key in policies:
        policy = policies[policy_key]
    else:
        raise InputError("UNKNOWN_POLICY", f"没有政策“{policy_key}”的申报表，可用：{'、'.join(policies)}")
    return build_model(policy, spec_path(policy))


def build_model(policy: Policy, path: Path) -> FormModel:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise FormSpecError("FORM_SPEC_UNREADABLE", f"无法读取申报表配置文件 {path}：{exc}") from None
    try:
        return _Builder(policy, path, raw).model()
    except KeyError as exc:
        raise _bad(path, str(exc.args[0]), "缺失") from None


class _Builder:
    """Lays the spec out on sheets: rows are assigned here, styles in lanxi_xl.templates."""

    def __init__(self, policy: Policy, path: Path, raw: Mapping[str, Any]) -> None:
        self.policy, self.path, self.raw = policy, path, raw
        if raw.get("policy") != policy.key:
            raise _bad(path, "policy", f"应为“{policy.key}”")
        self.version = str(raw["template_version"])
        if not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z.\-]*", self.version):
            raise _bad(path, "template_version", "只能包含字母、数字、点和连字符")
        self.base = str(raw["schema_base"]).rstrip("/")
        self.lists: dict[str, tuple[str, ...]] = {"yes_no": (YES, NO)}

    def schema_id(self, name: str) -> str:
        return f"{self.base}/{self.policy.key}/{self.version}/{name}.json"

    def model(self) -> FormModel:
        cover = self.raw["cover"]
        sheet = cover["sheet"]
        instructions = tuple(cover.get("instructions", ()))
        # Cover rows: 1 title, 2 policy, 3 "填写说明", instructions, blank, section title, header.
        row = 4 + len(instructions) + 1
        row += 2  # the section's title and header rows
        common = []
        seen: set[str] = set()
        for i, f in enumerate(cover["common"]["fields"]):
            key = f["key"]
            if key in seen or key == "attestations":
                raise _bad(self.path, f"cover.common.fields[{i}].key", f"重复或保留的键“{key}”")
            seen.add(key)
            built = _from_spec(self.path, f"cover.common.fields[{i}]", f, sheet=sheet, cell=f"{INPUT_COL}{row}",
                               pointer=f"/common/{key}", name=f"lx_{key}")
            if built.type == "year":
                # Years the policy governs (art. 17): from its first year to its end, if any.
                until = self.policy.effective_until
                built = replace(built, minimum=Decimal(self.policy.first_year),
                                maximum=Decimal(until.year) if until else None)
            common.append(built)
            row += 1
        row += 1
        row += 2  # the section's title and header rows
        attestations = []
        for d in self.policy.disqualifications:
            if d.type == "bool":
                attestations.append(Field(
                    key=d.name, label=d.label, type="bool", help=f"原文：{d.quote}", fact=d.name,
                    sheet=sheet, cell=f"{INPUT_COL}{row}", pointer=f"/common/attestations/{d.name}",
                    name=f"lx_{d.name}",
                ))
            else:  # a rate threshold (养老保险参保率)
                assert d.value is not None
                attestations.append(Field(
                    key=d.name, label=d.label, type=d.type, minimum=Decimal(0), maximum=Decimal(1),
                    help=f"按百分比填写，如 85%；{d.word}{format_rate(d.value)}的不得享受（原文：{d.quote}）",
                    fact=d.name, sheet=sheet, cell=f"{INPUT_COL}{row}",
                    pointer=f"/common/attestations/{d.name}", name=f"lx_{d.name}",
                ))
            row += 1
        summary_row = row + 1
        for f in common + attestations:
            self._register_list(f)

        articles: dict[str, ArticleForm] = {}
        by_article: dict[int, list[Clause]] = {}
        for clause in self.policy.clauses.values():
            by_article.setdefault(clause.article, []).append(clause)
        raw_articles = self.raw["articles"]
        for number_, clauses in by_article.items():
            key = str(number_)
            if key not in raw_articles:
                raise _bad(self.path, f"articles.{key}", f"缺失：政策第{key}条需要申报表")
            articles[key] = self._article(key, clauses, raw_articles[key] or {})
        extra = set(raw_articles) - set(articles)
        if extra:
            raise _bad(self.path, f"articles.{sorted(extra)[0]}", "在政策中没有对应的条款")

        return FormModel(
            policy=self.policy,
            template_version=self.version,
            schema_base=self.base,
            cover_sheet=sheet,
            cover_title=cover["title"],
            instructions=instructions,
            common_title=cover["common"]["title"],
            common=tuple(common),
            attestation_title=cover["attestations"]["title"],
            attestation_prompt=cover["attestations"].get("flag_prompt", ""),
            attestations=tuple(attestations),
            summary_title=cover["summary"]["title"],
            summary_first_row=summary_row,
            articles=MappingProxyType(articles),
            list_values=MappingProxyType(dict(self.lists)),
            source=str(self.path),
        )

    def _register_list(self, f: Field) -> None:
        if f.type == "choice":
            self.lists[list_id(f)] = tuple(o.label for o in f.options)

    def _article(self, key: str, clauses: list[Clause], raw: Mapping[str, Any]) -> ArticleForm:
        where = f"articles.{key}"
        sheet = raw.get("sheet") or f"第{key}条"
        if len(sheet) > 31 or re.search(r"[\[\]:*?/\\']", sheet):
            raise _bad(self.path, f"{where}.sheet", "工作表名不超过31个字符，且不能含 []:*?/\\'")
        title = raw.get("title") or clauses[0].title
        if len(clauses) > 1 and not raw.get("title"):
            raise _bad(self.path, f"{where}.title", "含多款的条款需要一个标题")
        multi = len(clauses) > 1
        # Rows: 1 title, one row per clause text, the estimate, one row per clause part
        # (multi-clause articles), a status line, a blank, the header, then the fields.
        row = 2 + len(clauses)
        estimate_cell = f"{INPUT_COL}{row}"
        row += 1
        clause_cells: dict[str, str] = {}
        if multi:
            for c in clauses:
                clause_cells[c.id] = f"{INPUT_COL}{row}"
                row += 1
        status_cell = f"{LABEL_COL}{row}"
        row += 2
        anchors: dict[str, int] = {"estimate": int(estimate_cell[1:]), "header": row}
        row += 1

        derived_raw: Mapping[str, Any] = raw.get("derived") or {}
        tables_raw: Sequence[Mapping[str, Any]] = raw.get("tables") or []
        item_tables = {t.get("items") for t in tables_raw if t.get("items")}
        fields: list[Field] = []
        facts_of: dict[str, FactSpec] = {}
        for c in clauses:
            if multi:
                anchors[f"clause:{c.id}"] = row
                row += 1
            for name, spec in c.facts.items():
                if name in facts_of:
                    raise _bad(self.path, where, f"两款共用事实“{name}”，申报表无法为其分配单元格")
                facts_of[name] = spec
                if name in derived_raw or name in item_tables:
                    continue
                if spec.type == "items":
                    raise _bad(self.path, f"{where}.tables", f"明细事实“{name}”需要一张明细表（items: {name}）")
                fields.append(fact_field(spec, clause=c.id, sheet=sheet, cell=f"{INPUT_COL}{row}",
                                         pointer=f"/articles/{key}/{name}", name=f"lx_{name}"))
                row += 1
        for f in fields:
            self._register_list(f)

        tables: list[Table] = []
        helper_col = HELPER_FIRST_COL
        for i, t in enumerate(tables_raw):
            tw = f"{where}.tables[{i}]"
            row += 1
            anchors[f"table:{t['key']}"] = row  # title row; header is the next row
            first_row = row + 2
            items = t.get("items")
            item_specs: Mapping[str, FactSpec] = {}
            if items:
                if items not in facts_of or facts_of[items].type != "items":
                    raise _bad(self.path, f"{tw}.items", f"“{items}”不是本条的明细事实")
                item_specs = facts_of[items].items
            columns: list[Field] = []
            for j, col in enumerate(t["columns"]):
                letter = col_letter(TABLE_FIRST_COL + j)
                layout = dict(sheet=sheet, cell=letter)
                if "fact" in col:
                    if col["fact"] not in item_specs:
                        raise _bad(self.path, f"{tw}.columns[{j}].fact", f"“{col['fact']}”不是明细事实“{items}”的字段")
                    spec = item_specs[col["fact"]]
                    column = fact_field(spec, pointer=col["fact"], name=f"lx_{t['key']}_{spec.name}", **layout)
                else:
                    column = _from_spec(self.path, f"{tw}.columns[{j}]", col,
                                        pointer=col["key"], name=f"lx_{t['key']}_{col['key']}", **layout)
                columns.append(column)
            keys = [c.key for c in columns]
            if len(set(keys)) != len(keys):
                raise _bad(self.path, f"{tw}.columns", "列的键重复")
            if items and set(item_specs) - set(keys):
                raise _bad(self.path, f"{tw}.columns", f"缺少明细字段：{'、'.join(set(item_specs) - set(keys))}")
            item_column = col_letter(TABLE_FIRST_COL + len(columns)) if items else None
            helpers: dict[str, str] = {}
            for fact, d in derived_raw.items():
                if d.get("table") == t["key"] and d.get("where"):
                    helpers[fact] = col_letter(helper_col)
                    helper_col += 1
            label = t.get("label") or (facts_of[items].label if items else "")
            if not label:
                raise _bad(self.path, f"{tw}.label", "缺失")
            table = Table(
                key=t["key"], label=label, help=t.get("help") or (facts_of[items].help if items else ""), sheet=sheet,
                pointer=f"/articles/{key}/{t['key']}", first_row=first_row, rows=int(t["rows"]),
                columns=tuple(columns), items=items, min_items=int(t.get("min_items", 1)),
                item_column=item_column, helper_columns=MappingProxyType(helpers),
            )
            for c in columns:
                self._register_list(c)
            tables.append(table)
            row = table.last_row + 1

        derived: list[Derived] = []
        if derived_raw:
            row += 1
            anchors["derived"] = row
            row += 1
        table_by_key = {t.key: t for t in tables}
        for fact, d in derived_raw.items():
            dw = f"{where}.derived.{fact}"
            if fact not in facts_of:
                raise _bad(self.path, dw, f"“{fact}”不是第{key}条的事实")
            spec = facts_of[fact]
            kind = "max" if "max" in d else "sum"
            table = table_by_key.get(d.get("table"))
            if table is None:
                raise _bad(self.path, f"{dw}.table", f"没有明细表“{d.get('table')}”")
            column = d.get(kind)
            if column not in [c.key for c in table.columns]:
                raise _bad(self.path, f"{dw}.{kind}", f"明细表“{table.key}”没有列“{column}”")
            where_: dict[str, tuple[str, ...]] = {}
            for ck, values in (d.get("where") or {}).items():
                options = {o.key for o in table.column(ck).options}
                if not set(values) <= options:
                    raise _bad(self.path, f"{dw}.where.{ck}", f"选项应在 {'、'.join(sorted(options))} 之中")
                where_[ck] = tuple(values)
            clause = next(c.id for c in clauses if fact in c.facts)
            derived.append(Derived(
                fact=fact, label=spec.label, type=spec.type, unit=spec.unit, help=d.get("help", ""),
                clause=clause, table=table.key, kind=kind, column=column, where=MappingProxyType(where_),
                sheet=sheet, cell=f"{INPUT_COL}{row}", name=f"lx_{fact}",
            ))
            row += 1
        anchors["end"] = row - 1
        covered = {f.fact for f in fields} | {d.fact for d in derived} | item_tables
        missing = set(facts_of) - covered
        if missing:
            raise _bad(self.path, where, f"事实 {'、'.join(sorted(missing))} 没有对应的单元格")
        return ArticleForm(
            article=int(key), key=key, title=title, sheet=sheet, clauses=tuple(c.id for c in clauses),
            fields=tuple(fields), tables=tuple(tables), derived=tuple(derived), estimate_cell=estimate_cell,
            clause_cells=MappingProxyType(clause_cells), status_cell=status_cell,
            schema_id=self.schema_id(f"art-{key}"), first_row_of=MappingProxyType(anchors),
        )


# --- GB 32100-2015 -------------------------------------------------------------------


credit_code_check_char = credit_code.check_char
is_credit_code = credit_code.is_valid


# --- JSON Schemas --------------------------------------------------------------------

META_SCHEMA = "https://json-schema.org/draft/2020-12/schema"
_TYPE_NAMES = {"money": "金额", "usd": "美元金额", "number": "数值", "integer": "整数", "rate": "比例"}


def _num(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _describe(f: Field) -> str:
    parts = [f.help] if f.help else []
    if f.unit:
        parts.append(f"单位：{f.unit}")
    if f.type == "rate":
        parts.append("JSON 中填小数，85% 即 0.85")
    if f.type == "bool":
        parts.append("true 为“是”，false 为“否”")
    if f.options:
        parts.append("可选：" + "、".join(f"{o.key}（{o.label}）" for o in f.options))
    if f.type == "credit_code":
        parts.append("校验位按 GB 32100-2015 核对")
    return "；".join(parts)


def field_schema(f: Field) -> dict[str, Any]:
    s: dict[str, Any] = {"title": f.label}
    description = _describe(f)
    if description:
        s["description"] = description
    if f.type in ("money", "usd", "number", "rate"):
        s["type"] = "number"
    elif f.type in ("integer", "year"):
        s["type"] = "integer"
    elif f.type == "bool":
        s["type"] = "boolean"
    elif f.type == "choice":
        s["enum"] = [o.key for o in f.options]
    else:
        s["type"] = "string"
        s["minLength"] = 1
        s["pattern"] = NO_CONTROL_PATTERN
    if f.minimum is not None:
        s["minimum"] = _num(f.minimum)
    if f.maximum is not None:
        s["maximum"] = _num(f.maximum)
    if f.max_length:
        s["maxLength"] = f.max_length
    if f.type == "date":
        s["format"] = "date"
        s["pattern"] = DATE_PATTERN
    if f.type == "credit_code":
        s["pattern"] = CREDIT_CODE_PATTERN
        s["format"] = CREDIT_CODE_FORMAT
    if f.type == "mobile":
        s["pattern"] = MOBILE_PATTERN
    if f.pattern:
        s["pattern"] = f.pattern
    return s


def _object(fields: Sequence[Field], required: Sequence[str] | None = None) -> dict[str, Any]:
    req = [f.key for f in fields if f.required] if required is None else list(required)
    s: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {f.key: field_schema(f) for f in fields},
    }
    if req:
        s["required"] = req
    return s


def common_schema(model: FormModel) -> dict[str, Any]:
    s = _object(model.common)
    s.update({"$schema": META_SCHEMA, "$id": model.schema_id("common"), "title": model.common_title.split("、", 1)[-1]})
    s["description"] = f"{model.policy.id}申报的共同部分：申报单位基本信息与第{model.policy.disqualification_article}条承诺事项"
    att = _object(model.attestations)
    att["title"] = "第15条承诺事项"
    att["description"] = model.policy.disqualification_text
    s["properties"]["attestations"] = att
    s["required"] = [*s["required"], "attestations"]
    return s


def article_def(model: FormModel, art: ArticleForm) -> dict[str, Any]:
    policy = model.policy
    clauses = [policy.clauses[c] for c in art.clauses]
    s = _object(art.fields, required=[] if len(clauses) > 1 else None)
    s["title"] = f"第{art.article}条 {art.title}"
    s["description"] = "\n".join(f"{c.cite}：{c.text}" for c in clauses)
    for t in art.tables:
        row = _object(t.columns)
        s["properties"][t.key] = {
            "title": t.label,
            "description": f"{t.help}（最多{t.rows}行）" if t.help else f"最多{t.rows}行",
            "type": "array",
            "minItems": t.min_items,
            "maxItems": t.rows,
            "items": row,
        }
        s.setdefault("required", []).append(t.key)
    if len(clauses) > 1:
        # Either part may be declared alone; a part is declared by its own key figures,
        # and then all of them are needed.
        s["anyOf"] = [{"required": [f.key for f in art.key_fields(c.id)]} for c in clauses]
        dependent = {}
        for c in clauses:
            keys = [f.key for f in art.key_fields(c.id)]
            for k in keys:
                others = [o for o in keys if o != k]
                if others:
                    dependent[k] = others
        if dependent:
            s["dependentRequired"] = dependent
    return s


def _declaration_envelope(model: FormModel, schema_id: str, title: str, description: str,
                          articles: Mapping[str, Any]) -> dict[str, Any]:
    """What every declaration schema shares: the stamp fields, the common part, ``articles``."""
    return {
        "$schema": META_SCHEMA,
        "$id": schema_id,
        "title": title,
        "description": description,
        "type": "object",
        "additionalProperties": False,
        "required": ["common", "articles"],
        "properties": {
            "policy": {"const": model.policy.key, "title": "政策"},
            "template_version": {"const": model.template_version, "title": "申报表模板版本"},
            "common": {"$ref": "common.json"},
            "articles": {"type": "object", "additionalProperties": False, **articles},
        },
    }


def article_schema(model: FormModel, art: ArticleForm) -> dict[str, Any]:
    schema = _declaration_envelope(
        model, art.schema_id, f"{model.policy.id} 第{art.article}条 {art.title} 申报",
        f"申报表模板版本 {model.template_version}；共同部分见 common.json",
        {"required": [art.key], "properties": {art.key: {"$ref": "#/$defs/article"}}},
    )
    schema["$defs"] = {"article": article_def(model, art)}
    return schema


def declaration_schema(model: FormModel) -> dict[str, Any]:
    return _declaration_envelope(
        model, model.schema_id("declaration"), f"{model.policy.id} 综合申报（可同时申报多个条款）",
        f"申报表模板版本 {model.template_version}；每个条款的内容见 art-N.json",
        {"minProperties": 1, "properties": {k: {"$ref": f"art-{k}.json#/$defs/article"} for k in model.articles}},
    )


def build_schemas(model: FormModel) -> dict[str, dict[str, Any]]:
    """Every schema of the model by file name (common.json, art-N.json, declaration.json)."""
    out = {"common.json": common_schema(model)}
    for art in model.articles.values():
        out[f"art-{art.key}.json"] = article_schema(model, art)
    out["declaration.json"] = declaration_schema(model)
    return out


def schema_text(schema: Mapping[str, Any]) -> str:
    """The committed form of a schema: sorted keys, 2-space indent, UTF-8, final newline."""
    return json.dumps(schema, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def schema_dir(model: FormModel) -> Path:
    """Where the schemas live under ``schemas/``: mirrors the path of their $id."""
    return Path(model.policy.key) / model.template_version


# --- validating an instance ----------------------------------------------------------

_FORMAT_CHECKER = jsonschema.FormatChecker()


@_FORMAT_CHECKER.checks(CREDIT_CODE_FORMAT)
def _check_credit_code(value: object) -> bool:
    return not isinstance(value, str) or is_credit_code(value)


@dataclass(frozen=True)
class Problem:
    """One schema error, with its JSON pointer and a Chinese message."""

    pointer: str
    message: str
    keyword: str

    def to_dict(self) -> dict[str, str]:
        return {"pointer": self.pointer, "message": self.message, "keyword": self.keyword}


def target_name(target: str) -> str:
    return "declaration" if target == "all" else f"art-{target}"


# (id of a property's subschema, type of the value, the value) -> the subschema, for every
# scalar value found valid against that subschema. Whether a string, number, boolean or
# null satisfies a schema depends on nothing else (the format checks are pure functions),
# so a value seen valid before — 否, 2023, 90%, a dropdown's label — is not validated
# again: the errors found are exactly jsonschema's. The subschema is kept as the value so
# that its id cannot be reused while the entry lives.
_VALID_SCALARS: dict[tuple[int, type, Any], Any] = {}
_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})
_MAX_VALID_SCALARS = 1 << 15  # 32,768 values (~25 MB at most): only forms not accepted fast come here


def _properties(validator: Any, properties: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """jsonschema's ``properties`` keyword, remembering the scalar values found valid."""
    if not validator.is_type(instance, "object"):
        return
    valid = _VALID_SCALARS
    for name, subschema in properties.items():
        if name in instance:
            value = instance[name]
            if type(value) in _SCALAR_TYPES and not (type(value) is str and len(value) > 256):  # bounded memory
                key = (id(subschema), type(value), value)
                if key in valid:
                    continue
                errors = list(validator.descend(value, subschema, path=name, schema_path=name))
                if not errors:
                    if len(valid) >= _MAX_VALID_SCALARS:
                        valid.clear()
                    valid[key] = subschema
                yield from errors
            else:
                yield from validator.descend(value, subschema, path=name, schema_path=name)


@cache
def ecma_regex(pattern: str) -> re.Pattern[str]:
    """A schema ``pattern`` as JSON Schema means it (ECMA-262): a final ``$`` is the end of
    the text. Python's ``$`` also matches before a final line break, so "13800000000\n"
    would pass ``^1[3-9][0-9]{9}$``."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    """jsonschema's ``pattern`` keyword (same message), with the end anchor of ECMA-262."""
    if validator.is_type(instance, "string") and not ecma_regex(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"properties": _properties,
                                                                            "pattern": _pattern})


@cache
def _validator(policy_key: str, version: str, target: str) -> jsonschema.Draft202012Validator:
    model = load_model(policy_key)
    assert model.template_version == version
    schemas = build_schemas(model)
    resources = [
        (s["$id"], referencing.Resource.from_contents(s, default_specification=referencing.jsonschema.DRAFT202012))
        for s in schemas.values()
    ]
    registry: referencing.Registry = referencing.Registry().with_resources(resources)
    # The same schema with its $refs inlined: resolving them through the registry was a
    # quarter of the time of validating a returned form (the checker validates hundreds).
    name = f"{target_name(target)}.json"
    return _Validator(  # type: ignore[no-any-return]
        _inline_refs(schemas[name], name, schemas), registry=registry, format_checker=_FORMAT_CHECKER
    )


def _inline_refs(node: Any, doc: str, schemas: Mapping[str, Any]) -> Any:
    """``node`` with every lone ``$ref`` to ``schemas`` replaced by its target (they do not recurse)."""
    if isinstance(node, list):
        return [_inline_refs(v, doc, schemas) for v in node]
    if not isinstance(node, Mapping):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and len(node) == 1:
        name, _, fragment = ref.partition("#")
        name = name or doc
        target: Any = schemas[name]
        for part in fragment.split("/")[1:]:
            target = target[part]
        return _inline_refs({k: v for k, v in target.items() if k not in ("$id", "$schema", "$defs")}, name, schemas)
    return {k: _inline_refs(v, doc, schemas) for k, v in node.items() if k != "$defs"}


# --- the fast accept path: the inlined schema compiled to a yes/no predicate -----------
#
# Nearly every instance of a batch is valid, and for a valid one jsonschema's error
# generators are pure overhead. So each validator's schema is also compiled, once, into
# nested closures answering only "valid?". The answer is sound, never lax: True only
# where jsonschema finds no error at all. Anything not mirrored exactly here — a keyword
# outside the subset build_schemas emits, a leftover $ref, an unknown format, a Python
# type that is not plain JSON, NaN — gives False (or no predicate), and jsonschema
# decides as before, with its messages. The closures hold only what they were built with.

_Check = Callable[[Any], bool]


class _Uncompilable(Exception):
    """The schema uses something the fast path does not mirror exactly."""


# Annotations decide nothing; $defs is unreachable once no $ref is left (a $ref refuses).
_ANNOTATIONS = frozenset({"title", "description", "$id", "$schema", "$defs", "$comment", "default", "examples"})
_KEYWORDS = _ANNOTATIONS | {
    "type", "const", "enum", "anyOf", "format", "minimum", "maximum", "minLength", "maxLength", "pattern",
    "items", "minItems", "maxItems", "properties", "additionalProperties", "required", "minProperties",
    "dependentRequired",
}
# What a JSON document is made of. jsonschema's type checks are isinstance checks; rather
# than reason about subclasses (a str subclass, an OrderedDict, a Decimal), refuse them.
_JSON_TYPES = frozenset({dict, list, str, int, float, bool, type(None)})
_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})
_TYPE_OF = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
            "integer": int, "number": int}


def _need(ok: bool, why: str) -> None:
    if not ok:
        raise _Uncompilable(why)


def _count(schema: Mapping[str, Any], key: str, default: float) -> float:
    value = schema.get(key, default)
    _need(value is default or type(value) is int and value >= 0, f"{key}: {value!r}")
    return value  # type: ignore[no-any-return]


def _always(instance: Any) -> bool:
    return True


def _never(instance: Any) -> bool:
    return False


def _every(checks: Sequence[_Check]) -> _Check:
    if len(checks) <= 1:
        return checks[0] if checks else _always
    frozen = tuple(checks)

    def every(x: Any) -> bool:
        for check in frozen:
            if not check(x):
                return False
        return True
    return every


def _compile(schema: Any) -> _Check:
    """``schema`` as a predicate that is True only where jsonschema (2020-12) reports nothing."""
    if type(schema) is bool:
        return _always if schema else _never
    _need(type(schema) is dict, f"schema {schema!r}")
    unknown = schema.keys() - _KEYWORDS
    _need(not unknown, f"keywords {sorted(unknown)}")
    checks = [c for c in (_type_check(schema), _object_check(schema), _array_check(schema),
                          _string_check(schema), _number_check(schema)) if c is not None]
    for key in ("const", "enum"):
        if key in schema:
            values = [schema[key]] if key == "const" else schema[key]
            _need(type(values) is list and all(type(v) in _JSON_SCALARS for v in values), f"{key}: {values!r}")
            # By type too: jsonschema's equal() tells True from 1 but not 1 from 1.0; stricter is sound.
            members = frozenset((type(v), v) for v in values)
            checks.append(lambda x, members=members: type(x) in _JSON_SCALARS and (type(x), x) in members)
    if "anyOf" in schema:
        _need(type(schema["anyOf"]) is list and bool(schema["anyOf"]), "anyOf")
        branches = tuple(_compile(b) for b in schema["anyOf"])
        checks.append(lambda x: any(branch(x) for branch in branches))
    if "format" in schema:
        # The checking function itself, taken now: validating then reads no shared table.
        _need(schema["format"] in _FORMAT_CHECKER.checkers, f"format {schema['format']!r}")
        conforms = _FORMAT_CHECKER.checkers[schema["format"]][0]
        checks.append(lambda x: _safely(conforms, x))
    return _every(checks)


def _safely(conforms: Callable[[Any], Any], x: Any) -> bool:
    try:
        return bool(conforms(x))
    except Exception:  # whatever it raises, jsonschema shall say it (or raise it again)
        return False


def _type_check(schema: Mapping[str, Any]) -> _Check | None:
    if "type" not in schema:
        return None
    names = [schema["type"]] if type(schema["type"]) is str else schema["type"]
    _need(type(names) is list and all(n in _TYPE_OF for n in names), f"type {names!r}")
    exact = frozenset(_TYPE_OF[n] for n in names)
    # A float is an integer when whole (2020-12); inf and NaN are refused even as "number".
    whole = math.isfinite if "number" in names else float.is_integer if "integer" in names else None
    if whole is None:
        return lambda x: type(x) in exact
    return lambda x: type(x) in exact or (type(x) is float and whole(x))


def _object_check(schema: Mapping[str, Any]) -> _Check | None:
    properties, extra = schema.get("properties", {}), schema.get("additionalProperties", True)
    required, dependent = schema.get("required", []), schema.get("dependentRequired", {})
    least = _count(schema, "minProperties", 0)
    _need(type(properties) is dict and type(required) is list and all(type(k) is str for k in required)
          and type(dependent) is dict and all(type(v) is list and all(type(o) is str for o in v)
                                              for v in dependent.values()), "object keywords")
    if not (properties or extra is not True or required or dependent or least):
        return None
    checks = MappingProxyType({name: _compile(sub) for name, sub in properties.items()})
    other, needed = _compile(extra), tuple(required)
    pairs = tuple((k, tuple(v)) for k, v in dependent.items())

    def object_(x: Any) -> bool:
        if type(x) is not dict:
            return type(x) in _JSON_TYPES  # none of these keywords applies to a non-object
        if len(x) < least or not all(k in x for k in needed):
            return False
        if pairs and not all(o in x for k, others in pairs if k in x for o in others):
            return False
        for k, v in x.items():
            if not checks.get(k, other)(v):
                return False
        return True
    return object_


def _array_check(schema: Mapping[str, Any]) -> _Check | None:
    if not schema.keys() & {"items", "minItems", "maxItems"}:
        return None
    each = _compile(schema.get("items", True))
    least, most = _count(schema, "minItems", 0), _count(schema, "maxItems", math.inf)

    def array(x: Any) -> bool:
        if type(x) is not list:
            return type(x) in _JSON_TYPES
        return least <= len(x) <= most and all(each(item) for item in x)
    return array


def _string_check(schema: Mapping[str, Any]) -> _Check | None:
    if not schema.keys() & {"minLength", "maxLength", "pattern"}:
        return None
    least, most = _count(schema, "minLength", 0), _count(schema, "maxLength", math.inf)
    try:  # the validator's own pattern keyword runs the same regex (ecma_regex), compiled once
        search = ecma_regex(schema["pattern"]).search if "pattern" in schema else None
    except (re.error, TypeError) as e:
        raise _Uncompilable(f"pattern {schema['pattern']!r}") from e

    def string(x: Any) -> bool:
        if type(x) is not str:
            return type(x) in _JSON_TYPES
        return least <= len(x) <= most and (search is None or search(x) is not None)
    return string


def _number_check(schema: Mapping[str, Any]) -> _Check | None:
    if not schema.keys() & {"minimum", "maximum"}:
        return None
    low, high = schema.get("minimum", -math.inf), schema.get("maximum", math.inf)
    _need(all(type(v) in (int, float) and v == v for v in (low, high)), "minimum/maximum")

    def number(x: Any) -> bool:
        if type(x) is not int and type(x) is not float:
            return type(x) in _JSON_TYPES
        return low <= x <= high  # False for NaN, which jsonschema would let pass: stricter
    return number


def _compile_or_none(schema: Any) -> _Check | None:
    try:
        return _compile(schema)
    except _Uncompilable:
        return None


@cache
def _fast_accept(policy_key: str, version: str, target: str) -> _Check | None:
    """The compiled predicate of :func:`_validator`'s own (inlined) schema, or None."""
    return _compile_or_none(_validator(policy_key, version, target).schema)


def validate_instance(model: FormModel, target: str, instance: Any) -> list[Problem]:
    """Schema errors of ``instance`` for ``target`` ("all" or an article), in document order."""
    if target != "all":
        model.article(target)
    key = (model.policy.key, model.template_version, target)
    accept = _fast_accept(*key)
    if accept is not None and accept(instance):
        return []
    return _schema_problems(_validator(*key), instance)


def _schema_problems(validator: jsonschema.Draft202012Validator, instance: Any) -> list[Problem]:
    """What jsonschema finds wrong with ``instance``: the path of every instance not accepted fast."""
    problems = [p for e in _leaves(validator.iter_errors(instance)) for p in _problems(e)]
    unique = {(p.pointer, p.message): p for p in problems}
    return sorted(unique.values(), key=lambda p: (_pointer_key(p.pointer), p.message))


def check_instance(model: FormModel, target: str, instance: Any) -> None:
    """Raise ``INSTANCE_INVALID`` listing every schema error (nothing is guessed)."""
    problems = validate_instance(model, target, instance)
    if problems:
        shown = "\n".join(f"  {p.pointer or '/'}：{p.message}" for p in problems[:30])
        more = f"\n  ……另有{len(problems) - 30}处" if len(problems) > 30 else ""
        raise InputError(
            "INSTANCE_INVALID",
            f"申报数据不符合{target_name(target)}.json（共{len(problems)}处）：\n{shown}{more}",
            problems=[p.to_dict() for p in problems],
        )


def _pointer_key(pointer: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in pointer.split("/")]


def _leaves(errors: Any) -> Iterator[jsonschema.ValidationError]:
    """anyOf/oneOf wrappers carry vaguer messages than their branches; report what fits."""
    for e in errors:
        if e.validator == "anyOf" and e.context and all(c.validator == "required" for c in e.context):
            yield e  # “declare at least one part”: one message says it best
        elif e.context:
            yield from _leaves(e.context)
        else:
            yield e


def _title(e: jsonschema.ValidationError, name: str | None = None) -> str:
    schema = e.schema if isinstance(e.schema, Mapping) else {}
    if name is not None:
        sub = (schema.get("properties") or {}).get(name, {})
        return sub.get("title") or name
    return schema.get("title") or (str(e.path[-1]) if e.path else "申报数据")


def _problems(e: jsonschema.ValidationError) -> list[Problem]:
    """Chinese messages for one error; a ``required`` error gives one per missing key."""
    pointer = "".join(f"/{p}" for p in e.absolute_path)
    if e.validator == "required" and isinstance(e.instance, Mapping):
        return [Problem(f"{pointer}/{m}", f"缺少「{_title(e, m)}」（{m}）", "required")
                for m in e.validator_value if m not in e.instance]
    return [_problem(e, pointer)]


def _problem(e: jsonschema.ValidationError, pointer: str) -> Problem:
    kw, v, inst = e.validator, e.validator_value, e.instance
    label = f"「{_title(e)}」"
    if kw == "additionalProperties":
        extra = sorted(k for k in inst if k not in (e.schema.get("properties") or {}))
        msg = f"未知的申报项“{'、'.join(extra)}”"
    elif kw == "type":
        want = {"number": "数字", "integer": "整数", "string": "文本", "boolean": "true 或 false（是/否）",
                "object": "对象", "array": "列表"}.get(v, v)
        msg = f"{label}应为{want}，收到“{inst}”"
    elif kw == "minimum":
        msg = f"{label}应不小于 {v}，收到 {inst}"
    elif kw == "maximum":
        msg = f"{label}应不大于 {v}，收到 {inst}"
    elif kw == "enum":
        msg = f"{label}应为 {'、'.join(map(str, v))} 之一，收到“{inst}”"
    elif kw == "const":
        msg = f"{label}应为“{v}”，收到“{inst}”（模板或政策版本不符）"
    elif kw == "minLength":
        msg = f"{label}不能为空"
    elif kw == "maxLength":
        msg = f"{label}不能超过{v}个字符"
    elif kw == "pattern" or kw == "format":
        if v == CREDIT_CODE_FORMAT:
            msg = f"{label}“{inst}”的校验位不正确（GB 32100-2015）"
        else:
            msg = f"{label}格式不正确，收到“{inst}”"
    elif kw == "minItems":
        msg = f"{label}至少要填写{v}行"
    elif kw == "maxItems":
        msg = f"{label}最多{v}行，收到{len(inst)}行"
    elif kw == "minProperties":
        msg = "至少要申报一个条款"
    elif kw == "dependentRequired":
        have = next(k for k in v if k in inst and any(o not in inst for o in v[k]))
        need = next(o for o in v[have] if o not in inst)
        msg = f"填写了「{_title(e, have)}」的，还需填写「{_title(e, need)}」"
        pointer = f"{pointer}/{need}"
    elif kw == "anyOf":
        parts = ["、".join(f"「{_title(e, k)}」" for k in branch["required"]) for branch in v]
        msg = "至少申报一款：" + "；或".join(parts)
    else:  # pragma: no cover - keywords the generated schemas do not use
        msg = f"{label}：{e.message}"
    return Problem(pointer, msg, str(kw))


# --- the engine's facts from an instance ---------------------------------------------


def declared_clauses(model: FormModel, article_key: str, data: Mapping[str, Any]) -> tuple[str, ...]:
    """The clauses of an article that the data declares (multi-clause: by their key figures)."""
    art = model.article(article_key)
    if len(art.clauses) == 1:
        return art.clauses
    return tuple(c for c in art.clauses if all(f.key in data for f in art.key_fields(c)))


def _matches(row: Mapping[str, Any], where: Mapping[str, tuple[str, ...]]) -> bool:
    return all(row.get(k) in keys for k, keys in where.items())


def aggregate(d: Derived, rows: Sequence[Mapping[str, Any]]) -> Decimal:
    """A derived fact from its table's rows, exactly (Decimal)."""
    values = [to_decimal(r.get(d.column)) for r in rows if _matches(r, d.where)]
    numbers = [v for v in values if v is not None]
    if d.kind == "max":
        return max(numbers, default=Decimal(0))
    return sum(numbers, Decimal(0))


def facts_for(clause_id: str, instance: Mapping[str, Any], model: FormModel | None = None) -> dict[str, Any]:
    """The engine facts of one clause from a (valid) instance, art. 15 answers included.

    Feed the result to ``rules.compute(clause_id, facts, year)``. Raises
    ``CLAUSE_NOT_DECLARED`` when the instance does not declare that clause.
    """
    model = model or load_model(instance.get("policy"))
    clause = model.policy.clause(clause_id)
    art = model.article(clause.article)
    data = (instance.get("articles") or {}).get(art.key)
    if data is None or clause.id not in declared_clauses(model, art.key, data):
        raise InputError("CLAUSE_NOT_DECLARED", f"申报数据中没有{clause.cite}{clause.title}的申报内容", clause=clause.id)
    facts: dict[str, Any] = {}
    for f in art.fields:
        if f.clause == clause.id and f.key in data:
            value = data[f.key]
            facts[f.fact or f.key] = value
    for d in art.derived:
        if d.clause == clause.id:
            facts[d.fact] = aggregate(d, data.get(d.table, ()))
    for t in art.tables:
        if t.items and t.items in clause.facts:
            item_keys = set(clause.facts[t.items].items)
            facts[t.items] = [{k: v for k, v in row.items() if k in item_keys} for row in data.get(t.key, ())]
    answers = (instance.get("common") or {}).get("attestations") or {}
    for a in model.attestations:
        if a.key in answers:
            facts[a.fact or a.key] = answers[a.key]
    return facts


def declaration_year(instance: Mapping[str, Any]) -> Any:
    return (instance.get("common") or {}).get("year")


def claims(instance: Mapping[str, Any], model: FormModel | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Every clause the instance declares with its engine facts, art. 15 answers left out.

    The shape the registry's declaration documents use: pair it with :func:`answers`.
    """
    model = model or load_model(instance.get("policy"))
    out = []
    dq = {a.fact or a.key for a in model.attestations}
    for key, data in (instance.get("articles") or {}).items():
        for clause_id in declared_clauses(model, key, data):
            facts = facts_for(clause_id, instance, model)
            out.append((clause_id, {k: v for k, v in facts.items() if k not in dq}))
    order = list(model.policy.clauses)
    return sorted(out, key=lambda c: order.index(c[0]))


def answers(instance: Mapping[str, Any]) -> dict[str, Any]:
    """The art. 15 answers of an instance, by the engine's names."""
    return dict((instance.get("common") or {}).get("attestations") or {})


# --- reading a workbook back ---------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """A workbook read back: the JSON instance, and where each value came from."""

    instance: dict[str, Any]
    target: str  # "all" or the article key
    cells: Mapping[str, tuple[str, str]]  # JSON pointer -> (sheet, cell)
    stamp: Mapping[str, str]


def cell_to_json(f: Field, value: Any) -> Any:
    """A cell's value as the instance holds it; what cannot be read is kept for the schema to refuse."""
    # Free text is kept as typed; a coded text (a bank account: a pattern) loses the spaces
    # and line breaks around it, which Python's "$" in the pattern would let through.
    if isinstance(value, str) and (f.type != "text" or f.pattern):
        value = value.strip()
    if value is None or value == "":
        return None
    if f.type == "bool":
        if value == YES or value is True:
            return True
        if value == NO or value is False:
            return False
        return value
    if f.type == "choice":
        return f.option_key(str(value)) or value
    if f.type == "date":
        if isinstance(value, dt.datetime):
            return value.date().isoformat()
        if isinstance(value, dt.date):
            return value.isoformat()
        return str(value)
    if f.type in ("text", "credit_code", "mobile"):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value)
    if isinstance(value, bool):
        return value  # a TRUE typed into a number cell: the schema refuses it
    if isinstance(value, float) and value.is_integer() and f.type != "rate":
        return int(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def json_to_cell(f: Field, value: Any) -> Any:
    """A (valid) instance value as the cell holds it: labels, 是/否, dates, numbers."""
    if f.type == "bool":
        return YES if value else NO
    if f.type == "choice":
        return f.option_label(value) or value
    if f.type == "date":
        return dt.date.fromisoformat(value)
    return value


def read_stamp(wb: Any) -> dict[str, str]:
    if META_SHEET not in wb.sheetnames:
        raise InputError("NOT_A_TEMPLATE", "该工作簿不是本系统生成的申报表（缺少版本信息）")
    ws = wb[META_SHEET]
    stamp: dict[str, str] = {}
    for row in ws.iter_rows(min_row=2, max_col=2, values_only=True):
        if row[0] is None:
            break
        stamp[str(row[0])] = "" if row[1] is None else str(row[1])
    return stamp


def read_workbook(path: str | Path, model: FormModel | None = None) -> Reading:
    """Read a declaration workbook (a template, filled in) into a JSON instance."""
    import openpyxl  # the core stays free of openpyxl; reading needs it

    try:
        wb = openpyxl.load_workbook(path, data_only=True)
    except Exception as exc:  # zip, XML and openpyxl errors alike: not a readable xlsx
        raise InputError("UNREADABLE_WORKBOOK", f"无法读取工作簿 {Path(path).name}：{exc}") from None
    stamp = read_stamp(wb)
    model = model or load_model(stamp.get("policy") or None)
    target = stamp_target(model, stamp)
    return reading_from_cells(model, target, stamp, wb.sheetnames, lambda sheet, cell: wb[sheet][cell].value)


def stamp_target(model: FormModel, stamp: Mapping[str, str]) -> str:
    """The declaration a stamp names ("all" or an article key); refuses the calculator."""
    target = stamp.get("article", "")
    if target == "calculator":
        raise InputError("NOT_A_DECLARATION", "该工作簿是奖励计算器，不是申报表，请使用申报表模板填写后交回")
    if target != "all":
        model.article(target)
    return target


def reading_from_cells(
    model: FormModel,
    target: str,
    stamp: Mapping[str, str],
    sheetnames: Sequence[str],
    value_at: Any,  # (sheet name, cell such as "C7") -> the cell's value, as a reader gives it
) -> Reading:
    """The JSON instance from any cell reader (openpyxl here, python-calamine in the checker)."""
    cells: dict[str, tuple[str, str]] = {}
    instance: dict[str, Any] = {"policy": stamp.get("policy", ""), "template_version": stamp.get("template_version", "")}

    def put(obj: dict[str, Any], f: Field, pointer: str, sheet: str, cell: str) -> bool:
        cells[pointer] = (sheet, cell)
        value = cell_to_json(f, value_at(sheet, cell))
        if value is not None:
            obj[f.key] = value
            return True
        return False

    cover = model.cover_sheet
    common: dict[str, Any] = {}
    for f in model.common:
        put(common, f, f.pointer, cover, f.cell)
    answers: dict[str, Any] = {}
    for f in model.attestations:
        put(answers, f, f.pointer, cover, f.cell)
    common["attestations"] = answers
    instance["common"] = common

    articles: dict[str, Any] = {}
    keys = list(model.articles) if target == "all" else [target]
    for key in keys:
        art = model.articles[key]
        if art.sheet not in sheetnames:
            raise InputError("SHEET_MISSING", f"工作簿缺少工作表“{art.sheet}”", sheet=art.sheet)
        data: dict[str, Any] = {}
        filled = False
        for f in art.fields:
            filled |= put(data, f, f.pointer, art.sheet, f.cell)
        for t in art.tables:
            rows = []
            for i in range(t.rows):
                row: dict[str, Any] = {}
                for c in t.columns:
                    value = cell_to_json(c, value_at(art.sheet, f"{c.cell}{t.first_row + i}"))
                    if value is not None:
                        row[c.key] = value
                if row:
                    # Blank rows are skipped, so the pointer's row index can differ from
                    # the sheet row: `cells` records where each row came from.
                    n = len(rows)
                    for c in t.columns:
                        cells[f"{t.pointer}/{n}/{c.key}"] = (art.sheet, f"{c.cell}{t.first_row + i}")
                    rows.append(row)
            data[t.key] = rows
            filled |= bool(rows)
        if target != "all" or filled:
            articles[key] = data
    instance["articles"] = articles
    return Reading(instance, target, MappingProxyType(cells), MappingProxyType(dict(stamp)))


def read_instance(path: str | Path, model: FormModel | None = None) -> dict[str, Any]:
    """Workbook → JSON instance (to be checked against the schema named in its stamp)."""
    return read_workbook(path, model).instance
