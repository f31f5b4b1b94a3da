"""Checking returned declaration workbooks (issue #5): every error by cell, safely, fast.

One returned file goes through these steps; each may end it with a per-file error,
none raises (:func:`check_file`):

1. **Screen** (:func:`lanxi_xl.screen.screen`): not a zip, truncated, encrypted, .xls,
   CSV renamed, zip bomb, entity bomb are refused before anything parses the file;
   macros and external links are flagged, never run or followed.
2. **Guard** the parts python-calamine may read. calamine trusts two numbers it should
   not: the ``uniqueCount`` of the shared-string table (it reserves that many slots up
   front) and the cell addresses of a sheet (it allocates the dense rectangle up to the
   farthest cell). A 300-byte sheet with one cell at XFD1048576, or a shared-string
   table declaring 4,000,000,000 strings, makes the Rust side abort the whole process —
   no exception, the batch dies (docs/checking.md). So both are measured here first.
3. **Identify** the template from its stamp (custom document properties
   ``lanxi.*``, else the hidden ``_meta`` sheet, hidden or veryHidden).
4. **Read** the formulas, error cells and values of the sheet XML in one
   regular-expression pass over the bytes already inflated (:func:`scan_and_read`,
   exactly the values python-calamine gives; calamine reads a sheet whenever that pass
   meets anything unusual, and unusual XML takes a defused streaming parse), and
   compare every label, number and formula of the generated template with the file:
   edited labels, inserted rows, overwritten formulas are named by cell.
5. **Validate** the JSON instance against the template's JSON Schema (the validators
   are built once per process) after the checks the schema cannot express (numbers
   typed as text, formulas or error values in input cells); one error per cell.
6. **Compute** every declared clause with the engine, with its explanation.

The catalogue of check codes is :data:`CODES` (documented in docs/checking.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import io
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import defusedxml.ElementTree as DefusedET  # the exact sheet scan of unusual XML
import python_calamine

from . import forms
from .errors import InputError, LanxiError
from .forms import GENERATOR, LEDGER_STAMP, META_SHEET, ArticleForm, Field, FormModel, Table
from .money import ZERO, format_amount, format_rate
from .numerals import describe_number_text
from .registry import CheckedDeclaration, Claim, normalize_credit_code
from .rules import STATUS_ZH, Award, Status, compute
from .screen import MAX_FILE_BYTES, Screening, ScreeningError, screen
from .screen import BytesZip, Memo
from .screen import read_bounded  # the capped part reader screening uses

# --- the catalogue of check codes ----------------------------------------------------


@dataclass(frozen=True)
class CodeInfo:
    severity: str  # error: the declaration fails; warning: shown, the declaration may pass
    stage: str  # screen | template | layout | cell | schema | engine | internal
    summary: str  # what it means, in Chinese (docs/checking.md lists the same)


def _codes(*rows: tuple[str, str, str, str]) -> Mapping[str, CodeInfo]:
    return MappingProxyType({code: CodeInfo(sev, stage, text) for code, sev, stage, text in rows})


CODES: Mapping[str, CodeInfo] = _codes(
    # Screening (lanxi_xl.screen): the file is not opened further.
    ("FILE_UNREADABLE", "error", "screen", "文件无法读取"),
    ("EMPTY_FILE", "error", "screen", "文件为空"),
    ("FILE_TOO_LARGE", "error", "screen", "文件超过20MB"),
    ("LEGACY_XLS", "error", "screen", "旧版 .xls 格式"),
    ("ENCRYPTED_WORKBOOK", "error", "screen", "工作簿设置了打开密码或内容加密"),
    ("NOT_A_WORKBOOK", "error", "screen", "不是Excel工作簿（文本/CSV改名、普通压缩包或其他文件）"),
    ("CORRUPT_WORKBOOK", "error", "screen", "文件损坏或不完整"),
    ("ZIP_TOO_MANY_ENTRIES", "error", "screen", "压缩包部件过多"),
    ("ZIP_BOMB", "error", "screen", "解压后体积或压缩比异常（压缩炸弹）"),
    ("SHEET_TOO_LARGE", "error", "screen", "部件或工作表的数据范围超出申报表的合理范围"),
    ("XML_ENTITIES", "error", "screen", "XML 含实体声明（实体炸弹）"),
    ("SUSPICIOUS_STRUCTURE", "error", "screen", "文件内部声明的数量与实际不符（疑似恶意构造）"),
    ("MACRO_PRESENT", "warning", "screen", "文件含宏（VBA），不会运行"),
    ("EXTERNAL_LINKS", "warning", "screen", "文件含外部链接，不会读取或更新"),
    # Which template.
    ("NOT_A_TEMPLATE", "error", "template", "不是本系统下发的申报表（没有模板标识）"),
    ("FOREIGN_TEMPLATE", "error", "template", "其他来源或其他政策的模板"),
    ("NOT_A_DECLARATION", "error", "template", "是奖励计算器，不是申报表"),
    ("LEDGER_WORKBOOK", "error", "template", "是本系统导出的奖励台账，不是申报表（审核文件夹时跳过）"),
    ("TEMPLATE_OUTDATED", "error", "template", "模板版本不是现行版本"),
    ("TEMPLATE_LAYOUT_MISMATCH", "error", "template", "模板标识的版式与现行模板不一致"),
    ("SHEET_MISSING", "error", "template", "缺少申报表的工作表（被删除或改名）"),
    # The form itself: what the template fixes and the enterprise must not change.
    ("LAYOUT_CHANGED", "error", "layout", "插入、删除或移动了行列：此处以下的内容不予读取"),
    ("LABEL_CHANGED", "error", "layout", "标签、单位或说明文字被修改"),
    ("FORMULA_REPLACED", "error", "layout", "自动计算的公式被改写或删除"),
    ("LOCKED_CELL_CHANGED", "warning", "layout", "在非填报单元格中填写了内容（不会被读取）"),
    # One input cell: checks the schema cannot express.
    ("FORMULA_IN_INPUT", "error", "cell", "填报单元格中填写了公式"),
    ("CELL_ERROR_VALUE", "error", "cell", "填报单元格是错误值（#N/A、#VALUE! 等）"),
    ("NUMBER_AS_TEXT", "error", "cell", "数字填成了文字（60万、六十万、1,000）"),
    ("NUMBER_PRECISION_LOST", "error", "cell", "长数字（如银行账号）被存成数字，超过15位的部分已丢失"),
    # The JSON Schema of the template.
    ("REQUIRED_MISSING", "error", "schema", "必填项未填写"),
    ("WRONG_TYPE", "error", "schema", "类型不符（如应为整数、应选择是/否）"),
    ("OUT_OF_RANGE", "error", "schema", "超出允许范围"),
    ("NOT_IN_LIST", "error", "schema", "不是下拉列表中的选项"),
    ("TEXT_TOO_LONG", "error", "schema", "文字超过长度限制"),
    ("BAD_FORMAT", "error", "schema", "格式不正确（日期、手机号码、统一社会信用代码等）"),
    ("CREDIT_CODE_CHECK_DIGIT", "error", "schema", "统一社会信用代码校验位不正确（GB 32100-2015）"),
    ("TOO_FEW_ROWS", "error", "schema", "明细表行数不足"),
    ("TOO_MANY_ROWS", "error", "schema", "明细表行数超过上限"),
    ("NO_CLAUSE_DECLARED", "error", "schema", "没有申报任何条款（或款）"),
    ("SCHEMA_VIOLATION", "error", "schema", "不符合 JSON Schema 的其他情形"),
    # The engine.
    ("ENGINE_REFUSED", "error", "engine", "计算引擎拒绝了申报数据"),
    # Our own failure: the batch goes on.
    ("INTERNAL_ERROR", "error", "internal", "检查程序内部错误（已跳过该文件）"),
)

SCHEMA_CODES: Mapping[str, str] = MappingProxyType({
    "required": "REQUIRED_MISSING", "dependentRequired": "REQUIRED_MISSING", "minLength": "REQUIRED_MISSING",
    "type": "WRONG_TYPE", "minimum": "OUT_OF_RANGE", "maximum": "OUT_OF_RANGE", "enum": "NOT_IN_LIST",
    "maxLength": "TEXT_TOO_LONG", "pattern": "BAD_FORMAT", "format": "BAD_FORMAT", "minItems": "TOO_FEW_ROWS",
    "maxItems": "TOO_MANY_ROWS", "anyOf": "NO_CLAUSE_DECLARED", "minProperties": "NO_CLAUSE_DECLARED",
})

# Which schema error a cell shows when it has several (the first of these that applies).
SCHEMA_PRIORITY = ("type", "enum", "pattern", "format", "required", "dependentRequired", "minLength", "minimum",
                   "maximum", "maxLength")

# Limits of what is handed to calamine (see the module docstring). A declaration form
# is ~40 rows × 13 columns with ~300 strings; these leave room for any honest file.
MAX_SHEET_ROWS = 2000
MAX_SHEET_COLS = 104  # up to column CZ
MAX_SHARED_STRINGS = 1 << 18  # 262,144 strings (a form has ~300)
# openpyxl (only for the annotated copy) is slow on big sheets: above this, no copy.
ANNOTATE_MAX_SHEET_BYTES = 5 * 1024 * 1024
MAX_LABEL_ERRORS = 10  # per sheet; beyond that the sheet is not the form any more
MAX_SHIFT = 50  # rows searched for a moved label
WORKBOOK_SUFFIXES = (".xlsx", ".xlsm", ".xls")
NUMERIC_TYPES = frozenset({"money", "usd", "number", "integer", "rate", "year"})
TEXT_TYPES = frozenset({"text", "credit_code", "mobile"})
ANNOTATION_SHEET = "审核意见"


# --- results -------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckError:
    """One finding: a stable code, a Chinese message and where it is."""

    code: str
    message: str
    severity: str = "error"
    sheet: str | None = None
    cell: str | None = None
    field: str | None = None  # the field's label as the form shows it
    pointer: str | None = None  # JSON pointer in the instance
    value: str | None = None  # what the cell holds, as text (quoted in outputs, never a live formula)

    @property
    def where(self) -> str:
        if self.sheet and self.cell:
            return f"{self.sheet}!{self.cell}"
        return self.sheet or ""

    def line(self) -> str:
        where = f" {self.where}" if self.where else ""
        return f"[{self.code}]{where} {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "severity": self.severity, "sheet": self.sheet,
                "cell": self.cell, "where": self.where or None, "field": self.field, "pointer": self.pointer,
                "value": self.value}


@dataclass(frozen=True)
class FileReport:
    """The check of one returned file."""

    path: Path
    name: str  # as shown: relative to the folder it was found in, else the file name
    sha256: str
    kind: str  # xlsx | xlsm | xls | csv | encrypted | zip | empty | unknown
    stamp: Mapping[str, str]
    target: str | None  # "all" or the article key, when the template was recognised
    valid: bool
    errors: tuple[CheckError, ...]  # severity "error"
    flags: tuple[CheckError, ...]  # severity "warning"
    instance: Mapping[str, Any] | None
    awards: tuple[Award, ...]

    @property
    def explanations(self) -> tuple[str, ...]:
        """Each award's Chinese explanation, written only when asked for (--json, --explain)."""
        return tuple(a.explain() for a in self.awards)

    @property
    def template(self) -> str | None:
        """The template as the registry records it, e.g. ``art-8@2022.1``."""
        if self.target is None:
            return None
        return f"{forms.target_name(self.target)}@{self.stamp.get('template_version', '')}"

    @property
    def template_label(self) -> str:
        if self.target is None:
            return "未识别的模板"
        what = "综合申报表" if self.target == "all" else f"第{self.target}条申报表"
        return f"{what}（模板 {self.stamp.get('template_version', '')}）"

    @property
    def total(self) -> Decimal:
        return sum((a.amount for a in self.awards), ZERO)

    @property
    def problems(self) -> tuple[CheckError, ...]:
        return self.errors + self.flags


def _error(code: str, message: str, **where: Any) -> CheckError:
    return CheckError(code, message, CODES[code].severity, **where)


def _refused(path: Path, name: str, sha: str, kind: str, problems: Iterable[CheckError],
             stamp: Mapping[str, str] | None = None, target: str | None = None) -> FileReport:
    found = list(problems)
    errors = tuple(p for p in found if p.severity == "error")
    return FileReport(path, name, sha, kind, MappingProxyType(dict(stamp or {})), target, not errors, errors,
                      tuple(p for p in found if p.severity != "error"), None, ())


# --- the generated template, as the checker compares with it ---------------------------


@dataclass(frozen=True)
class SheetLayout:
    name: str
    # row -> ((column, constant), ...), 1-based, rows in order; numbers as floats (as calamine reads them)
    rows: Mapping[int, tuple[tuple[int, Any], ...]]
    formulas: frozenset[str]  # cells holding a formula in the template
    inputs: Mapping[str, Field]  # input cell -> its field (table columns: every row)
    known: Mapping[int, frozenset[int]]  # row -> columns with a constant, an input or a formula


@dataclass(frozen=True)
class Layout:
    """What the current template of a target looks like, built once per process."""

    model: FormModel
    target: str
    sheets: tuple[SheetLayout, ...]
    fields: Mapping[str, Field]  # pointer (table cells: "/articles/7/events/*/cost") -> field
    tables: Mapping[str, Table]  # table pointer -> table

    def sheet_index(self, name: str | None) -> int:
        return next((i for i, s in enumerate(self.sheets) if s.name == name), -1)


@cache
def _ref(cell: str) -> tuple[int, int]:
    """"C7" -> (7, 3), 1-based."""
    m = re.fullmatch(r"([A-Z]{1,3})([0-9]+)", cell)
    if not m:
        raise ValueError(cell)
    col = 0
    for ch in m.group(1):
        col = col * 26 + ord(ch) - 64
    return int(m.group(2)), col


@cache
def _cell_name(row: int, col: int) -> str:
    return f"{forms.col_letter(col)}{row}"


_LAYOUTS: dict[tuple[int, str], Layout] = {}


def layout(model: FormModel, target: str) -> Layout:
    """The generated template of ``target`` as constants, formulas and input cells per sheet
    (built once per model and target: a batch pays it once, not per file)."""
    hit = _LAYOUTS.get((id(model), target))
    if hit is None or hit.model is not model:
        hit = _LAYOUTS[(id(model), target)] = _build_layout(model, target)
    return hit


def _build_layout(model: FormModel, target: str) -> Layout:
    from .templates import build_workbook  # openpyxl: once per target and process

    wb = build_workbook(model, target)
    arts = list(model.articles.values()) if target == "all" else [model.article(target)]
    inputs: dict[str, dict[str, Field]] = {model.cover_sheet: {f.cell: f for f in model.all_fields}}
    fields: dict[str, Field] = {f.pointer: f for f in model.all_fields}
    tables: dict[str, Table] = {}
    for art in arts:
        own = inputs.setdefault(art.sheet, {})
        for f in art.fields:
            own[f.cell] = f
            fields[f.pointer] = f
        for t in art.tables:
            tables[t.pointer] = t
            for c in t.columns:
                fields[f"{t.pointer}/*/{c.key}"] = c
                for i in range(t.rows):
                    own[t.cell(i, c.key)] = c
    sheets = []
    for name in [model.cover_sheet, *(a.sheet for a in arts)]:
        ws = wb[name]
        rows: dict[int, list[tuple[int, Any]]] = {}
        formulas = set()
        known: dict[int, set[int]] = {}
        for row in ws.iter_rows():
            for c in row:
                if c.value is None:
                    continue
                known.setdefault(c.row, set()).add(c.column)
                if c.data_type == "f":
                    formulas.add(c.coordinate)
                else:
                    value = float(c.value) if isinstance(c.value, int) and not isinstance(c.value, bool) else c.value
                    rows.setdefault(c.row, []).append((c.column, value))
        for ref in inputs[name]:
            r, col = _ref(ref)
            known.setdefault(r, set()).add(col)
        sheets.append(SheetLayout(
            name, MappingProxyType({r: tuple(rows[r]) for r in sorted(rows)}), frozenset(formulas),
            MappingProxyType(inputs[name]), MappingProxyType({r: frozenset(v) for r, v in known.items()}),
        ))
    return Layout(model, target, tuple(sheets), MappingProxyType(fields), MappingProxyType(tables))


# --- reading the zip: parts, stamp, sheet XML ------------------------------------------

_ATTR = re.compile(rb'(?<![\w:.-])([\w:.-]+)\s*=\s*"([^"]*)"')  # a name starts only where a word does
_SHEET_TAG = re.compile(rb"<(?:[\w.-]+:)?sheet\s([^<>]*)>")
_REL_TAG = re.compile(rb"<(?:[\w.-]+:)?Relationship\s([^<>]*)>")
_SST_TAG = re.compile(rb"<(?:[\w.-]+:)?sst\b([^<>]*)>")
_PROPERTY = re.compile(rb"<(?:[\w.-]+:)?property\s([^<>]*)>([^<]*(?:<(?!/?(?:[\w.-]+:)?property[\s>/])[^<]*)*)"
                       rb"</(?:[\w.-]+:)?property>")
_PROPERTY_VALUE = re.compile(rb">([^<]*)<")
_MARKUP_DECLARATION = re.compile(rb"<!")  # comments, CDATA (a regex finds it faster than ``in``)
_CELL_WITHOUT_ADDRESS = re.compile(rb'<c(?=[\s>/])(?! r=")')  # a cell whose address is not written first
_PREFIXED_CELL = re.compile(rb":c[\s>/]")
_BIG_REF = re.compile(rb'<c r="([A-Z]{2,3}|[A-Z](?=[0-9]{4}))([0-9]+)"')
_FORMULA = re.compile(rb"<f[\s>/]")
_ERROR_CELL = re.compile(rb'<c\s[^<>]*?\bt="e"[^<>]*>')
_R_ATTR = re.compile(rb'\br="([A-Z]{1,3})([0-9]{1,7})"')


def _attrs(raw: bytes) -> dict[str, str]:
    return {k.decode("utf-8", "replace").rsplit(":", 1)[-1]: html.unescape(v.decode("utf-8", "replace"))
            for k, v in _ATTR.findall(raw)}


class _Refusal(Exception):
    """Ends the check of one file with these findings (never leaves this module)."""

    def __init__(self, *errors: CheckError) -> None:
        super().__init__(errors[0].code)
        self.errors = errors


def _sheet_parts(zf: zipfile.ZipFile) -> dict[str, str]:
    """Sheet name -> zip part, as calamine finds them (xl/workbook.xml and its rels)."""
    try:
        workbook = read_bounded(zf, "xl/workbook.xml", 4 * 1024 * 1024)
        rels = read_bounded(zf, "xl/_rels/workbook.xml.rels", 4 * 1024 * 1024)
    except (KeyError, ScreeningError, zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise _Refusal(_error("CORRUPT_WORKBOOK", "文件缺少工作簿目录或已损坏，请用下发的申报表重新保存后提交")) from None
    return dict(_cached(_parts_from, workbook, rels))


def _well_formed(*parts: bytes) -> bool:
    """Whether every part is well-formed XML without a DTD. calamine refuses a file whose
    workbook, rels or styles do not parse; the byte-level readers would read on. Called
    by the parsers ``_cached`` keeps, so once per distinct bytes: the returns of one
    template share these parts."""
    try:
        for part in parts:
            DefusedET.fromstring(part, forbid_dtd=True)
    except Exception:  # noqa: BLE001 - ParseError, DTDForbidden, EntitiesForbidden: all "no"
        return False
    return True


_CACHE = Memo(entries=256, size=16 * 1024 * 1024)  # weighed by the bytes of the parts (results are small)


def _cached(fn: Callable[..., Any], *raw: bytes) -> Any:
    """``fn(*raw)`` once per distinct bytes: the returns of one template share their
    workbook.xml, rels, custom properties and styles byte for byte. Callers copy what
    they change."""
    key = (fn, *raw)
    hit = _CACHE.data.get(key, _CACHE)
    if hit is _CACHE:
        hit = fn(*raw)
        _CACHE.put(key, hit, sum(map(len, raw)))  # a part over 2 MB is not kept (Memo: an eighth)
    return hit


def _parts_from(workbook: bytes, rels: bytes) -> dict[str, str]:
    if not _well_formed(workbook, rels):  # a refusal is not kept by _cached: only good parts are
        raise _Refusal(_error("CORRUPT_WORKBOOK", "工作簿目录（workbook.xml 或其关系表）已损坏，请用下发的申报表重新保存后提交"))
    targets = {}
    for raw in _REL_TAG.findall(rels):
        a = _attrs(raw)
        target = a.get("Target", "")
        targets[a.get("Id", "")] = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
        kind = a.get("Type", "").rsplit("/", 1)[-1]
        if kind in ("sharedStrings", "styles"):
            targets[f"\0{kind}"] = targets[a.get("Id", "")]
    parts = {}
    for raw in _SHEET_TAG.findall(workbook):
        a = _attrs(raw)
        part = targets.get(a.get("id", ""))
        if part and "name" in a:
            parts[a["name"]] = part
    # Not sheets: where the shared strings and styles are ("\0" cannot start a sheet name).
    for kind in ("sharedStrings", "styles"):
        if f"\0{kind}" in targets:
            parts[f"\0{kind}"] = targets[f"\0{kind}"]
    if b"date1904" in workbook:  # LibreOffice writes date1904="false"
        flag = re.search(rb'date1904\s*=\s*"([^"]*)"', workbook)
        if flag is None or flag.group(1) not in (b"0", b"false"):
            parts["\0date1904"] = ""
    return parts


def _stamp_from_properties(zf: zipfile.ZipFile) -> dict[str, str]:
    """The ``lanxi.*`` custom document properties (all strings, whatever type LibreOffice gave them).

    A regular expression, not an XML parser: the part is tiny, screening refused any
    DOCTYPE, and a property we cannot read simply means "no stamp here".
    """
    try:
        data = read_bounded(zf, "docProps/custom.xml", 1024 * 1024)
    except (KeyError, ScreeningError, zipfile.BadZipFile, OSError, EOFError, ValueError):
        return {}
    return dict(_cached(_properties_from, data))


def _properties_from(data: bytes) -> dict[str, str]:
    stamp = {}
    for attrs, body in _PROPERTY.findall(data):
        name = _attrs(attrs).get("name", "")
        if name.startswith("lanxi."):
            value = _PROPERTY_VALUE.search(body)
            stamp[name[len("lanxi."):]] = html.unescape(value.group(1).decode("utf-8", "replace")).strip() if value else ""
    return stamp


def _guard_shared_strings(zf: zipfile.ZipFile) -> None:
    """calamine reserves ``uniqueCount`` slots before reading a string: refuse a lie."""
    try:
        info = zf.getinfo("xl/sharedStrings.xml")
    except KeyError:
        return
    whole = zf.inflated.get(info.header_offset) if isinstance(zf, BytesZip) else None  # inflated by screening
    if whole is not None:
        head = whole[:4096]
    else:
        with zf.open(info) as part:
            head = part.read(4096)
    tag = _SST_TAG.search(head)
    # Only uniqueCount sizes calamine's reservation; ``count`` (references) may honestly be larger.
    value = _attrs(tag.group(1)).get("uniqueCount", "0") if tag else "0"
    declared = int(value) if value.isdigit() else 0
    # An honest table spends at least 5 bytes (<si/>) on every string.
    if declared > MAX_SHARED_STRINGS or declared > info.file_size // 5 + 1:
        raise _Refusal(_error(
            "SUSPICIOUS_STRUCTURE",
            f"文件的共享字符串表声明了{declared}个条目，与实际内容不符（疑似恶意构造的文件），已拒绝打开",
        ))


@dataclass(frozen=True)
class SheetScan:
    """What the sheet XML says that calamine does not: formulas, error values, extent."""

    formulas: frozenset[str]
    errors: frozenset[str]
    rows: int
    cols: int


def _machine_written(xml: bytes) -> bool:
    """Unprefixed elements, every cell with its address written first, no comments or CDATA
    (nor anything else starting ``<!``)."""
    return not (_CELL_WITHOUT_ADDRESS.search(xml) or _PREFIXED_CELL.search(xml) or _MARKUP_DECLARATION.search(xml))


def scan_sheet_xml(xml: bytes) -> SheetScan:
    """Formula and error cells and the extent of one worksheet part.

    Machine-written XML (Excel, WPS, LibreOffice, openpyxl: unprefixed elements, every
    cell with its address written first, no comments) is scanned with a few byte-level
    regular expressions; anything else takes the defused streaming parse, which also
    follows implicit addresses. Each pass over a 20 KB sheet costs ~10 µs.
    """
    if not _machine_written(xml):
        return _scan_sheet_exactly(xml)
    rows = cols = 0
    for letters, digits in _BIG_REF.findall(xml):  # beyond column Z or row 999: rare, measured exactly
        row, col = _ref((letters + digits).decode())
        rows, cols = max(rows, row), max(cols, col)
    errors: set[str] = set()
    if b't="e"' in xml:
        for tag in _ERROR_CELL.findall(xml):
            m = _R_ATTR.search(tag)
            if m:
                errors.add((m.group(1) + m.group(2)).decode())
    formulas = set()
    for m in _FORMULA.finditer(xml):
        # <f> comes first inside its <c r="…">: the last cell start shortly before it is its
        # cell (a bounded look back: a hostile part of formulas alone is not rescanned each time).
        start = xml.rfind(b'<c r="', max(0, m.start() - 1024), m.start())
        if start < 0:
            return _scan_sheet_exactly(xml)
        start += 6
        formulas.add(xml[start: xml.index(b'"', start)].decode())
    return SheetScan(frozenset(formulas), frozenset(errors), rows, cols)


def _scan_sheet_exactly(xml: bytes) -> SheetScan:
    formulas, errors = set(), set()
    row = col = max_row = max_col = 0
    current: str | None = None
    for event, el in DefusedET.iterparse(io.BytesIO(xml), events=("start", "end")):
        tag = el.tag.rsplit("}", 1)[-1]
        if event == "start":
            if tag == "row":
                r = el.get("r", "")
                row = int(r) if r.isdigit() else row + 1
                col = 0
            elif tag == "c":
                r = el.get("r", "")
                try:
                    row, col = _ref(r)
                except ValueError:
                    col += 1
                max_row, max_col = max(max_row, row), max(max_col, col)
                if max_row > MAX_SHEET_ROWS or max_col > MAX_SHEET_COLS:
                    break  # too large either way: no need to read on
                current = _cell_name(row, col)
                if el.get("t") == "e":
                    errors.add(current)
            elif tag == "f" and current is not None:
                formulas.add(current)
        else:
            if tag == "c":
                current = None
            if tag in ("c", "row"):
                el.clear()
    return SheetScan(frozenset(formulas), frozenset(errors), max_row, max_col)


# --- one file --------------------------------------------------------------------------


class _Unusual(Exception):
    """The byte-level value reader met something it does not read exactly like calamine."""


_V = re.compile(rb"<v>([^<]*)</v>")
_V_EMPTY = re.compile(rb"<v\s*/>")
_NUMBER = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_T_RUN = re.compile(rb"<t(\s[^<>]*)?>([^<]*)</t>|<t(\s[^<>]*)?/>")
_T_ATTRS = frozenset({b"", b' xml:space="preserve"'})
_SI = re.compile(rb"<si>([^<]*(?:<(?!/si>|si[\s>/])[^<]*)*)</si>|<si/>")
_TAG = re.compile(rb'</?([A-Za-z]+)(?:\s+[\w:.-]+="[^"<>]*")*\s*/?>')  # a whole tag, attributes quoted
_XF = re.compile(rb"<xf\b([^<>]*?)/?>")
_CELL_XFS = re.compile(rb"<cellXfs\b[^<>]*>([^<]*(?:<(?!/?cellXfs\b)[^<]*)*)</cellXfs>")
_NUM_FMT = re.compile(rb"<numFmt\b([^<>]*)/?>")
_ENTITY = re.compile(rb"&(amp|lt|gt|quot|apos|#[0-9]+|#x[0-9A-Fa-f]+);")
_ENTITIES = {b"amp": "&", b"lt": "<", b"gt": ">", b"quot": '"', b"apos": "'"}
# Builtin number formats calamine reads as dates/times; custom formats with a date letter
# are sent to calamine as well (the reader never converts a date itself).
_DATE_FMT_IDS = frozenset(range(14, 23)) | {45, 46, 47}
_RUN_TAGS = frozenset({b"r", b"rPr", b"t", b"phoneticPr"})  # phoneticPr: no text (Excel writes it in CJK strings)
_RUN_PROPERTIES = frozenset({b"b", b"i", b"u", b"sz", b"color", b"rFont", b"family", b"charset", b"scheme",
                             b"strike", b"vertAlign", b"outline", b"shadow", b"condense", b"extend"})
_PLAIN_FMT_IDS = frozenset(range(37, 45)) | {48, 49}


def _entity(m: re.Match[bytes]) -> str:
    name = m.group(1)
    if name[:1] == b"#":
        code = int(name[2:], 16) if name[1:2] == b"x" else int(name[1:])
        return chr(code)
    return _ENTITIES[name]


def _xml_text(raw: bytes, preserve: bool) -> str:
    """The text of one <t> (or <v>), as calamine reads it; anything doubtful raises _Unusual."""
    if not raw or b"\r" in raw or b"_x" in raw:
        raise _Unusual("empty string, CR or _xHHHH_ escape")
    if b"&" in raw:
        parts: list[str] = []
        pos = 0
        for m in _ENTITY.finditer(raw):
            parts.append(raw[pos:m.start()].decode("utf-8"))
            parts.append(_entity(m))
            pos = m.end()
        parts.append(raw[pos:].decode("utf-8"))
        if raw.count(b"&") != len(parts) // 2:
            raise _Unusual("entity")
        text = "".join(parts)
    else:
        text = raw.decode("utf-8")
    if not text or "\r" in text or (not preserve and text != text.strip()):
        raise _Unusual("empty, CR or untrimmed text")
    return text


def _rich_text(body: bytes) -> str:
    """The text of an <si> or <is>: one plain <t>, or rich-text runs <r><rPr>…</rPr><t>…</t></r>."""
    runs = _T_RUN.findall(body)
    if not runs or len(runs) != body.count(b"<t") or any(not raw for _a, raw, _e in runs):
        raise _Unusual("string without a plain, non-empty <t>")
    if any(attrs not in _T_ATTRS for attrs, _raw, _empty in runs):
        raise _Unusual("<t> with other attributes")  # a ">" in a quoted value would end the tag here
    # Every "<" starts a known element: a broken tag or a stray "<" is read otherwise by
    # calamine (the texts of a table's entries are kept, so this runs once per entry).
    tags = _TAG.findall(body)
    if len(tags) != body.count(b"<") or any(name not in _RUN_TAGS and name not in _RUN_PROPERTIES for name in tags):
        raise _Unusual("unknown or broken element in a string")
    return "".join(_xml_text(raw, b"preserve" in attrs) for attrs, raw, _empty in runs)


def _date_styles(styles: bytes) -> tuple[int, ...]:
    return _cached(_read_date_styles, styles)  # type: ignore[no-any-return]


def _read_date_styles(styles: bytes) -> tuple[int, ...]:
    """Per cellXfs index: how a number in that style reads — 0 a number, 1 a date (a pure
    y/m/d format), 2 anything else that may be a date or time (calamine decides)."""
    if not _well_formed(styles):
        raise ValueError("styles part is not well-formed XML")  # calamine's refusal: CORRUPT_WORKBOOK
    xfs = _CELL_XFS.search(styles)
    if xfs is None or b":xf" in styles or b"<!--" in styles or b"CDATA[" in styles:
        raise _Unusual("styles")
    custom: dict[int, int] = {}
    for raw in _NUM_FMT.findall(styles):
        a = _attrs(raw)
        if not a.get("numFmtId", "").isdigit():
            raise _Unusual("numFmt")
        code = re.sub(r'"[^"]*"|\\.', "", a.get("formatCode", ""))
        elapsed = re.search(r"\[[hms]+\]", code, re.I)  # [h]:mm, a duration
        letters = {ch for ch in re.sub(r"\[[^\]\[]*\]|General", "", code, flags=re.I) if ch.isalpha()}
        custom[int(a["numFmtId"])] = 2 if elapsed else 0 if not letters else 1 if letters <= set("ymdYMD") else 2
    out = []
    for raw in _XF.findall(xfs.group(1)):
        fid = _attrs(raw).get("numFmtId", "0")
        if not fid.isdigit():
            raise _Unusual("xf")
        n = int(fid)
        # Builtin date ids, and ids past 22 other than the plain number formats (37–44, 48,
        # 49: the rest include the East-Asian date formats): calamine decides those.
        out.append(custom[n] if n in custom else
                   2 if n in _DATE_FMT_IDS or n > 22 and n not in _PLAIN_FMT_IDS else 0)
    return tuple(out)


_EXCEL_EPOCH = dt.date(1899, 12, 30)


_SKIP = object()  # a cell without a value: calamine leaves it out (and out of the extent)
# The cells openpyxl, Excel and LibreOffice write, in one pass: r, s, t in that order, then
# an inline string, a value, or anything else (formulas: read by _cell_value).
# A cell start the expression cannot take whole is caught by the last group (``odd``).
_CELL_FAST = re.compile(rb'<c r="(?:([A-Z]{1,3})([0-9]{1,7})"(?: s="([0-9]+)")?(?: t="([A-Za-z]+)")?([^<>/]*)'
                        rb'(?:(/)>|>(?:<is><t>([^<&\r]+)</t></is>|<v>([^<]+)</v>|([^<]*(?:<(?!/c>|c[\s>/])[^<]*)*))</c>)|(.))',
                        re.S)
_XML_SPACE = b" \t\n"
_SPACE_BYTES = frozenset(b" \t\n\r")


@cache
def _col(letters: bytes) -> int:
    col = 0
    for ch in letters:
        col = col * 26 + ch - 64
    return col


def _plain_text(raw: bytes) -> str:
    """The text of a plain <t> (no xml:space): calamine trims XML white space at either end."""
    if b"&" in raw or b"_x" in raw or b"\r" in raw:
        return _xml_text(raw, False)
    if raw[:1] in _XML_SPACE or raw[-1:] in _XML_SPACE:
        raw = raw.strip(_XML_SPACE)
        if not raw:
            raise _Unusual("blank text")
    return raw.decode("utf-8")


def _number(raw: bytes, style: int, dates: Sequence[int], date1904: bool) -> Any:
    if not _NUMBER.fullmatch(raw):
        raise _Unusual("number")
    value = float(raw)
    if style == 0 and not dates:
        return value
    how = dates[style] if style < len(dates) else 0 if style == 0 else 2
    if how:
        # A whole serial in a pure date format, 1900 date system, past the phantom
        # 1900-02-29: the day calamine gives; anything else is calamine's to read.
        if how != 1 or not value.is_integer() or not 61 <= value < 2958466 or date1904:
            raise _Unusual("date")
        return _EXCEL_EPOCH + dt.timedelta(days=int(value))
    return value


def _cell_value(kind: bytes, style: int, body: bytes, strings: Sequence[str] | None, dates: Sequence[int],
                date1904: bool) -> Any:
    """One cell the fast expression did not take whole (formulas, rich text, a value after <f>)."""
    kind = kind or b"n"
    if kind == b"inlineStr":
        if not body:
            return _SKIP  # <c t="inlineStr"/>: no value, calamine skips the cell
        if not body.startswith(b"<is>") or not body.endswith(b"</is>") or b"<is>" in body[4:]:
            raise _Unusual("inline string")
        return _rich_text(body[4:-5])
    if b"<is" in body:
        raise _Unusual("inline string in another type")
    if body.count(b"<v") > 1:
        raise _Unusual("two values in one cell")  # malformed: which one calamine takes is calamine's
    v = _V.search(body)
    if v is None:
        if kind == b"n" and (not body or _V_EMPTY.search(body) or b"<v" not in body):
            return _SKIP  # no value: a formula not yet computed
        raise _Unusual("cell without a value")
    raw = v.group(1)
    if kind == b"n":
        if not raw:
            return _SKIP
        return _number(raw, style, dates, date1904)
    return _typed(kind, raw, strings)


def _typed(kind: bytes, raw: bytes, strings: Sequence[str] | None) -> Any:
    if not raw:
        if kind == b"str":
            return ""  # a formula string not computed (LibreOffice): calamine's "", in the extent
        raise _Unusual("empty value")
    if kind == b"s":
        if strings is None or not raw.isdigit() or int(raw) >= len(strings):
            raise _Unusual("shared string")
        return strings[int(raw)]
    if kind == b"str":
        value = _xml_text(raw, True)
        if value != value.strip():
            raise _Unusual("formula string with spaces")
        return value
    if kind == b"b":
        if raw not in (b"0", b"1"):
            raise _Unusual("boolean")
        return raw == b"1"
    if kind == b"e":
        return ""  # calamine hands error values over as blank
    raise _Unusual("cell type")


def _sheet_data(xml: bytes) -> tuple[int, int] | None:
    """Where the one <sheetData> of a sheet holds its rows (None: not one well-marked)."""
    start = xml.find(b"<sheetData")
    if start < 0 or xml.startswith(b"<sheetData/>", start):
        return None
    end = xml.find(b"</sheetData>", start)
    if not xml.startswith(b"<sheetData>", start) or end < 0 or xml.find(b"<sheetData", end) >= 0:
        return None
    return start + 11, end


_COLUMNS = {forms.col_letter(c).encode(): c for c in range(1, MAX_SHEET_COLS + 1)}
Common = Callable[[], "tuple[Sequence[str] | None, Sequence[int], bool]"]


def scan_and_read(xml: bytes, common: Common) -> tuple[SheetScan, list[list[Any]] | None, BaseException | None] | None:
    """:func:`scan_sheet_xml` and the values of the same cells in one pass, for
    machine-written sheet XML (None: not such XML; the caller scans exactly and lets
    calamine read the values).

    The values are the grid calamine's ``to_python(skip_empty_area=False)`` gives, or
    None when the reader meets anything it does not read exactly like calamine. It reads
    numbers (floats), dates in a plain y/m/d format, shared and inline strings (rich text
    included), booleans, formula strings, error values (blank). A time, a date in another
    format, an empty or untrimmed string, an escape calamine may decode, an unknown cell
    type or attribute: the values are calamine's. ``common()`` gives the shared strings,
    the date styles and the date1904 flag (or raises ``_Unusual``); any other error it
    raises is handed back, for the caller to raise after the extent guard (the order
    the checks had when calamine read those parts after the guard).
    """
    # Machine-written XML only: one unprefixed <sheetData>, in which the cells found below
    # account for every tag but the rows' (checked after the pass). A cell without its
    # address first, a prefixed element, a comment or CDATA there fails that count; one
    # outside <sheetData> too, as the expression finds it and the count does not.
    bounds = _sheet_data(xml)
    if bounds is None:
        if b"row" in xml or b"<c" in xml or b":c" in xml:
            return None  # rows outside a well-marked <sheetData>: calamine's to read
        bounds = (0, 0)
    found = _CELL_FAST.findall(xml)
    values = True
    strings: Sequence[str] | None = None
    dates: Sequence[int] = ()
    date1904 = False
    pending: BaseException | None = None
    if values:
        try:
            strings, dates, date1904 = common()
        except _Unusual:
            values = False
        except Exception as exc:  # noqa: BLE001 - raised by the caller after the extent guard
            values, pending = False, exc
    cells: dict[int, Any] = {}  # row << 15 | column (columns end at 16,384)
    formulas: set[str] = set()
    errors: set[str] = set()
    columns = _COLUMNS
    rows = cols = row = 0
    row_digits = b""
    last = -1  # machine-written cells come in order: a cell out of order or written twice is calamine's
    tags = 0  # the "<" the cells account for: <c/> 1, inline string 6, value 4, else 2 + the body's
    for letters, digits, style, kind, attrs, slash, text, raw, body, odd in found:
        if odd or attrs and attrs.strip() or body and b"<c" in body:
            # a cell the expression cannot read, attributes in another order or ones
            # calamine may heed, a cell inside a cell: the exact scan
            return None
        tags += 1 if slash else 6 if text else 4 if raw else 2 + body.count(b"<")
        if digits != row_digits:
            row_digits, row = digits, int(digits)
            if row > rows:
                rows = row
        col = columns.get(letters) or _col(letters)
        if col > cols:
            cols = col
        where = row << 15 | col
        if where <= last:
            values = False
        last = where
        if body and b"<f" in body:
            formulas.add((letters + digits).decode())
        if kind == b"e":
            errors.add((letters + digits).decode())
        if not values:
            continue
        try:
            if text:
                if kind != b"inlineStr":
                    raise _Unusual("inline string in another type")
                if b"_x" in text or text[0] in _SPACE_BYTES or text[-1] in _SPACE_BYTES:
                    cells[where] = _plain_text(text)
                else:
                    cells[where] = text.decode("utf-8")
                continue
            if raw:
                if not kind or kind == b"n":
                    value = _number(raw, int(style) if style else 0, dates, date1904)
                elif kind == b"s" and strings is not None and raw.isdigit() and int(raw) < len(strings):
                    value = strings[int(raw)]  # _typed's shared string, inline: most cells of a re-saved form
                else:
                    value = _typed(kind, raw, strings)
            elif body:
                value = _cell_value(kind, int(style) if style else 0, body, strings, dates, date1904)
                if value is _SKIP:
                    continue
            elif not kind or kind in (b"n", b"inlineStr"):
                continue  # <c r="D16" s="6" t="inlineStr"/>: no value
            else:
                raise _Unusual("typed cell without a value")
            cells[where] = value
        except _Unusual:
            values = False
    start, end = bounds
    if tags + xml.count(b"<row", start, end) + xml.count(b"</row>", start, end) != xml.count(b"<", start, end):
        # Another element among the rows (a <col> pasted in, a broken tag), or cells outside
        # <sheetData>: XML calamine may read otherwise than the expression does.
        return None
    scan = SheetScan(frozenset(formulas), frozenset(errors), rows, cols)
    if not values:
        return scan, None, pending
    if not cells or rows > MAX_SHEET_ROWS or cols > MAX_SHEET_COLS:
        return scan, [], None  # too large: refused by the caller before the grid is used
    height = max(cells) >> 15
    width = max(k & 0x7FFF for k in cells)
    grid = [[""] * width for _ in range(height)]
    for k, value in cells.items():
        grid[(k >> 15) - 1][(k & 0x7FFF) - 1] = value
    return scan, grid, None


_SI_PLAIN = re.compile(rb"<si><t>([^<&\r]+)</t></si>")


def _shared_strings(xml: bytes) -> list[str]:
    # Prefixed elements and comments or CDATA (both "<!") would shift or fake entries. A
    # phonetic run (<rPh>) or an <si> with attributes is refused further on: _rich_text
    # knows no rPh, and the count of "<si" then differs from the strings found.
    if b":si" in xml or b"<!" in xml:
        raise _Unusual("shared strings")
    count = xml.count(b"<si")
    if b"<r>" not in xml and b"<t " not in xml:
        plain = _SI_PLAIN.findall(xml)
        if len(plain) == count:  # every string one plain <t>: the common table, in one pass
            return [_plain_text(raw) for raw in plain]
    bodies = _SI.findall(xml)  # b"" for <si/> and <si></si>, which _rich_text refuses
    if len(bodies) != count:
        raise _Unusual("shared strings")
    known = _SI_TEXTS.data
    try:
        return [known[body] for body in bodies]
    except KeyError:
        pass
    out = []
    for body in bodies:
        text = known.get(body)
        if text is None:
            text = _si_text(body)
            _SI_TEXTS.put(body, text, 2 * len(body) + 64)
        out.append(text)
    return out


_T_SIMPLE = re.compile(rb'<t( xml:space="preserve")?>([^<&\r_]+)</t>')


def _si_text(body: bytes) -> str:
    """:func:`_rich_text` of one entry, without its machinery for the common one: a single
    <t> (as LibreOffice writes every entry) with no entity, CR or escape in it."""
    m = _T_SIMPLE.fullmatch(body)
    if m is not None:
        text = m.group(2).decode("utf-8")
        if m.group(1) or text == text.strip():
            return text
    return _rich_text(body)


# The text of each <si> body read so far (a pure function of its bytes). Excel and
# LibreOffice rewrite the whole table into every file they save, labels and rich-text
# help included, so most bodies of a batch's tables have been read before.
_SI_TEXTS = Memo(entries=1 << 14, size=8 * 1024 * 1024)


class _Reader:
    """One file's zip, its sheets' XML and values: every sheet read is guarded first.

    Values come from the sheet XML the scan has already inflated (:func:`read_sheet_values`);
    python-calamine reads a sheet only when that reader meets something unusual.
    """

    def __init__(self, data: bytes, zf: zipfile.ZipFile) -> None:
        self.data, self.zf = data, zf
        parts = _sheet_parts(zf)
        self.extra = {k[1:]: parts.pop(k) for k in list(parts) if k.startswith("\0")}
        self.parts = parts
        self.scans: dict[str, SheetScan] = {}
        self.read: dict[str, list[list[Any]] | None] = {}  # values read with the scan (None: calamine's)
        self.grids: dict[str, list[list[Any]]] = {}
        self._book: Any = None
        self._common: tuple[list[str] | None, tuple[int, ...], bool] | None = None

    def scan(self, sheet: str) -> SheetScan:
        if sheet not in self.scans:
            part = self.parts.get(sheet)
            if part is None:
                raise KeyError(sheet)
            try:
                xml = read_bounded(self.zf, part, 30 * 1024 * 1024)
                both = scan_and_read(xml, self._strings_and_styles) if self._book is None else None
                found, grid, pending = (scan_sheet_xml(xml), None, None) if both is None else both
            except KeyError:
                raise _Refusal(_error("CORRUPT_WORKBOOK", f"工作表“{sheet}”的内容缺失，文件已损坏")) from None
            except Exception:  # noqa: BLE001 - malformed XML, short zip entry, CRC error
                raise _Refusal(_error("CORRUPT_WORKBOOK", f"工作表“{sheet}”的内容已损坏，请用下发的申报表重新填写")) from None
            if found.rows > MAX_SHEET_ROWS or found.cols > MAX_SHEET_COLS:
                far = _cell_name(max(found.rows, 1), max(found.cols, 1))
                raise _Refusal(_error(
                    "SHEET_TOO_LARGE",
                    f"工作表“{sheet}”的数据范围延伸到 {far}，远超申报表的范围（疑似异常文件），已拒绝读取",
                    sheet=sheet,
                ))
            if isinstance(pending, _Refusal):
                raise pending  # the shared-string guard
            if pending is not None:  # what calamine said of a damaged shared-string table or styles part
                raise _Refusal(_error("CORRUPT_WORKBOOK", "工作簿内容无法解析（内部结构损坏或与声明不符），请用下发的申报表重新保存后提交"))
            self.scans[sheet] = found
            self.read[sheet] = grid
        return self.scans[sheet]

    def _strings_and_styles(self) -> tuple[list[str] | None, tuple[int, ...], bool]:
        """The shared strings and the date styles, read once per file (as calamine reads
        both when it opens a workbook: a damaged table is a damaged file either way)."""
        if self._common is None:
            _guard_shared_strings(self.zf)
            names = set(self.zf.namelist())
            strings: list[str] | None = None
            sst = self.extra.get("sharedStrings")
            if sst is not None and sst in names:
                strings = _shared_strings(read_bounded(self.zf, sst, 30 * 1024 * 1024))
            elif "xl/sharedStrings.xml" in names:
                raise _Unusual("shared strings not where the rels say")
            styles = self.extra.get("styles")
            dates: tuple[int, ...] = ()
            if styles is not None and styles in names:
                dates = _date_styles(read_bounded(self.zf, styles, 4 * 1024 * 1024))
            self._common = (strings, dates, "date1904" in self.extra)
        return self._common

    def grid(self, sheet: str) -> list[list[Any]]:
        if sheet not in self.grids:
            self.scan(sheet)  # the extent guard runs before anything allocates the sheet
            grid = self.read.pop(sheet, None)
            if grid is None:
                if self._book is None:
                    _guard_shared_strings(self.zf)
                    self._book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(self.data))
                grid = self._book.get_sheet_by_name(sheet).to_python(skip_empty_area=False)
            self.grids[sheet] = grid
        return self.grids[sheet]

    def close(self) -> None:
        if self._book is not None:
            self._book.close()


def _value(grid: list[list[Any]], row: int, col: int) -> Any:
    if row <= len(grid):
        line = grid[row - 1]
        if col <= len(line):
            return line[col - 1]
    return ""


def _same(found: Any, expected: Any) -> bool:
    if isinstance(expected, str):
        return isinstance(found, str) and found.replace("\r\n", "\n").strip() == expected.strip()
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        return isinstance(found, (int, float)) and not isinstance(found, bool) and float(found) == float(expected)
    return bool(found == expected)


def _text_of(value: Any) -> str | None:
    """A cell's content as text for outputs (None for blank); floats as the cell shows them."""
    if value in ("", None) or isinstance(value, (dict, list)):
        return None
    if isinstance(value, float):
        return f"{value:.15g}"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return str(value)


def _shown(value: Any, limit: int = 30) -> str:
    text = str(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _read_stamp(reader: _Reader) -> dict[str, str]:
    stamp = _stamp_from_properties(reader.zf)
    if stamp.get("article") and stamp.get("template_version"):
        return stamp
    if META_SHEET in reader.parts:  # Excel keeps it veryHidden, LibreOffice makes it hidden: either will do
        grid = reader.grid(META_SHEET)
        for row in grid[1:]:
            key = row[0] if row else ""
            if key in ("", None):
                break
            value = row[1] if len(row) > 1 else ""
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            stamp[str(key).strip()] = str(value).strip()
    return stamp


def _template_hint(model: FormModel, sheetnames: Iterable[str]) -> str:
    arts = [a for a in model.articles.values() if a.sheet in set(sheetnames)]
    if len(arts) == 1:
        return f"看起来是第{arts[0].article}条的申报，请下载“art-{arts[0].key}.xlsx”（第{arts[0].article}条申报表）填写"
    if arts:
        return "请下载“declaration.xlsx”（综合申报表）或对应条款的单项申报表填写"
    return "请从商务局下载对应条款的申报表（如第8条为“art-8.xlsx”，多个条款用“declaration.xlsx”）填写"


def _identify(reader: _Reader, stamp: Mapping[str, str], model: FormModel | None) -> tuple[FormModel, str]:
    """The model and target a stamp names, or the reason the file is not a current declaration."""
    default = model or forms.load_model()
    if not stamp:
        raise _Refusal(_error("NOT_A_TEMPLATE", "该工作簿不是商务局下发的申报表（没有模板标识），无法审核；"
                                                + _template_hint(default, reader.parts)))
    if stamp.get("generator") != GENERATOR:
        source = f"来自“{_shown(stamp['generator'])}”" if stamp.get("generator") else "不完整"
        raise _Refusal(_error("FOREIGN_TEMPLATE", f"该工作簿的模板标识{source}，不是本系统下发的申报表；"
                                                  f"{_template_hint(default, reader.parts)}"))
    if all(stamp.get(k) == v for k, v in LEDGER_STAMP.items()):
        raise _Refusal(_error("LEDGER_WORKBOOK", "该工作簿是本系统导出的奖励台账，不是申报表，不予审核"))
    policy = stamp.get("policy", "")
    if model is None:
        try:
            model = forms.load_model(policy or None)
        except LanxiError:
            model = None
    if model is None or model.policy.key != policy:
        raise _Refusal(_error("FOREIGN_TEMPLATE", f"该申报表属于政策“{_shown(stamp.get('policy_id') or policy)}”，"
                                                  f"本系统审核{default.policy.id}的申报；{_template_hint(default, reader.parts)}"))
    try:
        target = forms.stamp_target(model, stamp)
    except InputError as exc:
        code = "NOT_A_DECLARATION" if exc.code == "NOT_A_DECLARATION" else "FOREIGN_TEMPLATE"
        raise _Refusal(_error(code, f"{exc.message}；{_template_hint(model, reader.parts)}")) from None
    what = "综合申报表“declaration.xlsx”" if target == "all" else f"第{target}条申报表“art-{target}.xlsx”"
    version = stamp.get("template_version", "")
    if version != model.template_version:
        raise _Refusal(_error(
            "TEMPLATE_OUTDATED",
            f"该申报表的模板版本为“{_shown(version)}”，现行版本为“{model.template_version}”，不能审核；"
            f"请下载现行的{what}重新填写后提交",
        ))
    if stamp.get("layout_sha256") not in (None, "", _digest(model)):
        raise _Refusal(_error(
            "TEMPLATE_LAYOUT_MISMATCH",
            f"该申报表的版式标识与现行模板（{model.template_version}）不一致，可能不是由商务局下发；请下载现行的{what}重新填写",
        ))
    missing = [s for s in [model.cover_sheet, *(a.sheet for a in _articles(model, target))] if s not in reader.parts]
    if missing:
        raise _Refusal(*(
            _error("SHEET_MISSING", f"工作簿缺少工作表“{s}”（可能被删除或改名）；请使用下发的{what}填写，不要改动工作表", sheet=s)
            for s in missing
        ))
    return model, target


_DIGESTS: dict[int, tuple[FormModel, str]] = {}


def _digest(model: FormModel) -> str:
    """``model.layout_digest()``, once per model (it hashes the whole layout)."""
    hit = _DIGESTS.get(id(model))
    if hit is None or hit[0] is not model:
        hit = _DIGESTS[id(model)] = (model, model.layout_digest())
    return hit[1]


def _articles(model: FormModel, target: str) -> list[ArticleForm]:
    return list(model.articles.values()) if target == "all" else [model.article(target)]


# --- comparing with the template ---------------------------------------------------------


def _shift(sl: SheetLayout, grid: list[list[Any]], row: int) -> tuple[str, int] | None:
    """Whether the template's rows from ``row`` on stand, whole, some rows or columns away."""
    following = [r for r in sorted(sl.rows) if r >= row][:3]

    def moved(dr: int, dc: int) -> bool:
        return all(r + dr >= 1 and c + dc >= 1 and _same(_value(grid, r + dr, c + dc), v)
                   for r in following for c, v in sl.rows[r])

    for d in range(1, MAX_SHIFT + 1):
        for sign in (1, -1):
            if moved(sign * d, 0):
                return "row", sign * d
    for d in range(1, 6):
        for sign in (1, -1):
            if moved(0, sign * d):
                return "col", sign * d
    return None


def compare_with_template(sl: SheetLayout, grid: list[list[Any]], scan: SheetScan) -> tuple[list[CheckError], int]:
    """Edited labels, moved rows, overwritten formulas, text typed into locked cells.

    Returns the findings and the first row whose contents are not to be trusted
    (a row past the end of the sheet when the layout is intact).
    """
    found: list[CheckError] = []
    cut = 1 << 30
    labels = 0
    height = len(grid)
    for row, pairs in sl.rows.items():
        line = grid[row - 1] if row <= height else ()
        width = len(line)
        # Exact equality first (what calamine reads back is what we wrote); tolerant second.
        wrong = [c for c, v in pairs if not (c <= width and line[c - 1] == v) and not _same(_value(grid, row, c), v)]
        if not wrong:
            continue
        expected = dict(pairs)
        cell = _cell_name(row, wrong[0])
        text = _shown(expected[wrong[0]])
        moved = _shift(sl, grid, row)
        if moved is not None:
            kind, d = moved
            if kind == "row":
                how = f"插入了{d}行" if d > 0 else f"删除了{-d}行"
                now = _cell_name(row + d, wrong[0])
            else:
                how = f"插入了{d}列" if d > 0 else f"删除了{-d}列"
                now = _cell_name(row, wrong[0] + d)
            found.append(_error(
                "LAYOUT_CHANGED",
                f"表格结构被改动（{how}）：「{text}」应在 {cell}，现在在 {now}；第{row}行及以下的内容不予读取。"
                "请在下发的申报表中填写，不要插入、删除或移动行列",
                sheet=sl.name, cell=cell,
            ))
            cut = row
            break
        for c in wrong:
            labels += 1
            if labels > MAX_LABEL_ERRORS:
                found.append(_error(
                    "LAYOUT_CHANGED",
                    f"工作表“{sl.name}”有多处（超过{MAX_LABEL_ERRORS}处）固定内容与申报表模板不同，"
                    f"第{row}行及以下的内容不予读取；请使用下发的申报表重新填写",
                    sheet=sl.name, cell=_cell_name(row, c),
                ))
                cut = row
                break
            now = _value(grid, row, c)
            what = f"被改为「{_shown(now)}」" if now not in ("", None) else "被删除"
            found.append(_error(
                "LABEL_CHANGED", f"此处应为「{_shown(expected[c])}」，{what}；申报表的标签和说明不能修改，请恢复原文",
                sheet=sl.name, cell=_cell_name(row, c), value=_text_of(now),
            ))
        if cut <= row:
            break
    for ref in sorted(sl.formulas - scan.formulas, key=_ref):
        if _ref(ref)[0] < cut:
            found.append(_error(
                "FORMULA_REPLACED",
                "此处原为自动计算的公式，已被改写或删除；请使用下发的申报表重新填写（公式单元格不要修改）",
                sheet=sl.name, cell=ref,
            ))
    nothing: frozenset[int] = frozenset()
    for r, line in enumerate(grid[: min(height, cut - 1)], start=1):
        known = sl.known.get(r, nothing)
        for c in [c for c, v in enumerate(line, start=1) if v != "" and v is not None and c not in known]:
            ref, v = _cell_name(r, c), line[c - 1]
            if ref not in scan.formulas:
                found.append(_error(
                    "LOCKED_CELL_CHANGED",
                    f"此单元格不是填报单元格，填写的内容「{_shown(v)}」不会被读取；请在黄色单元格中填写",
                    sheet=sl.name, cell=ref, value=_text_of(v),
                ))
    return found, cut


# --- the checks of one input cell, then the schema -------------------------------------------


def _cell_checks(f: Field, raw: Any, ref: str, scan: SheetScan) -> tuple[str, str] | None:
    """The one most helpful finding for an input cell the schema would misread (or None)."""
    what = "数字" if f.type in NUMERIC_TYPES else "内容"
    if ref in scan.formulas:
        return "FORMULA_IN_INPUT", f"「{f.label}」填写的是公式，请直接填写{what}（不要使用公式或引用其他单元格）"
    if ref in scan.errors:
        return "CELL_ERROR_VALUE", f"「{f.label}」显示为错误值（如 #N/A、#VALUE!），请直接填写{what}"
    if f.type in NUMERIC_TYPES and isinstance(raw, str) and raw.strip():
        return "NUMBER_AS_TEXT", f"「{f.label}」{describe_number_text(raw.strip(), f.unit)}"
    if f.type in TEXT_TYPES and isinstance(raw, float) and abs(raw) >= 1e15:
        return "NUMBER_PRECISION_LOST", (f"「{f.label}」以数字形式保存（{raw:.15g}），超过15位的数字已被Excel改写；"
                                         "请将单元格设为文本后重新填写完整的号码")
    return None


def _at(instance: Any, pointer: str) -> Any:
    node = instance
    for part in pointer.split("/")[1:]:
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _schema_message(code: str, p: forms.Problem, f: Field | None, label: str, value: Any) -> str:
    """Chinese for a person filling the workbook: dropdown labels, percentages, what to type."""
    if f is None:
        return p.message
    shown = "（空白）" if value is None else _shown(value, 40)
    if code == "REQUIRED_MISSING" and p.keyword != "dependentRequired":
        return f"{label}未填写（必填）"
    if code == "WRONG_TYPE":
        if f.type == "bool":
            return f"{label}应从下拉列表中选择“是”或“否”，收到“{shown}”"
        want = {"integer": "整数", "year": "整数年份", "date": "日期（如 2023-05-01）"}.get(f.type, "数字")
        return f"{label}应为{want}，收到“{shown}”"
    if code == "NOT_IN_LIST":
        return f"{label}应从下拉列表中选择：{'、'.join(o.label for o in f.options)}；收到“{shown}”"
    if code == "OUT_OF_RANGE" and f.type == "rate" and isinstance(value, (int, float)):
        return f"{label}应在0%至100%之间，收到{format_rate(Decimal(repr(value)))}"
    if code == "OUT_OF_RANGE":
        low = f"不小于{_plain(f.minimum)}" if f.minimum is not None else ""
        high = f"不大于{_plain(f.maximum)}" if f.maximum is not None else ""
        return f"{label}应{'、'.join(x for x in (low, high) if x)}{f.unit}，收到{shown}"
    if code == "BAD_FORMAT":
        if f.type == "credit_code":
            return f"{label}应为18位统一社会信用代码（数字或大写英文字母，不含I、O、S、V、Z），收到“{shown}”"
        if f.type == "mobile":
            return f"{label}应为11位手机号码，收到“{shown}”"
        if f.type == "date":
            return f"{label}应为日期（如 2023-05-01，单元格格式为日期），收到“{shown}”"
    if code == "CREDIT_CODE_CHECK_DIGIT" and isinstance(value, str):
        right = forms.credit_code_check_char(value[:17])
        return (f"{label}“{value}”的校验位不正确（GB 32100-2015）：按前17位计算，第18位应为“{right}”，"
                "请核对营业执照后重新填写")
    if code == "TEXT_TOO_LONG":
        return f"{label}不能超过{f.max_length}个字符"
    return p.message


_TABLE_CELL = re.compile(r"(/articles/[^/]+/[^/]+)/[0-9]+/([^/]+)")


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _locate(lay: Layout, reading: forms.Reading, pointer: str) -> tuple[str | None, str | None, Field | None, str]:
    """Sheet, cell, field and label (as the form shows it) of an instance pointer."""
    if pointer in reading.cells:
        sheet, cell = reading.cells[pointer]
        row = _TABLE_CELL.fullmatch(pointer)  # /articles/<article>/<table>/<row>/<column>
        if row is not None and row.group(1) in lay.tables:
            table, f = lay.tables[row.group(1)], lay.fields.get(f"{row.group(1)}/*/{row.group(2)}")
            if f is not None:
                n = _ref(cell)[0] - table.first_row + 1
                return sheet, cell, f, f"「{table.label}」第{n}行的「{f.label}」"
        f = lay.fields.get(pointer)
        return sheet, cell, f, f"「{f.label}」" if f else ""
    table = lay.tables.get(pointer)
    if table is not None:
        return table.sheet, f"{table.columns[0].cell}{table.first_row}", None, f"「{table.label}」"
    m = re.fullmatch(r"/articles/([^/]+)", pointer)
    if m and m.group(1) in lay.model.articles:
        art = lay.model.articles[m.group(1)]
        first = art.fields[0].cell if art.fields else None
        return art.sheet, first, None, f"第{art.article}条"
    return lay.model.cover_sheet if pointer.startswith("/articles") else None, None, None, ""


# --- check_file ------------------------------------------------------------------------------


def _screen_errors(result: Screening) -> list[CheckError]:
    return [CheckError(p.code, p.message, p.severity) for p in result.problems]


def _sha256(path: Path) -> tuple[str, bytes | None]:
    """The file's hash, and its bytes when it is small enough to be a declaration."""
    try:
        with path.open("rb") as fh:
            # read(n) would allocate n bytes first: the size the file says, then the bytes.
            small = os.fstat(fh.fileno()).st_size <= MAX_FILE_BYTES
            data = fh.read() if small else b""
            if small and len(data) <= MAX_FILE_BYTES:
                return hashlib.sha256(data).hexdigest(), data
            digest = hashlib.sha256(data)  # grown since, or large: hashed, not kept
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest(), None
    except OSError:
        return "", None


def check_file(path: Path, model: FormModel | None = None, name: str | None = None) -> FileReport:
    """Check one returned file; never raises for a bad file (a report with the reason instead)."""
    path = Path(path)
    name = name or path.name
    sha, data = _sha256(path)
    kind = "unknown"
    zf: BytesZip | None = None
    try:
        if data is not None and data[:4] == b"PK\x03\x04":
            try:  # one zip directory for screening and reading
                zf = BytesZip(data)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
                zf = None  # screening opens it again and says what is wrong
        result = screen(path, data, zf)
        kind = result.kind
        found = _screen_errors(result)
        if not result.readable or data is None:
            if data is None and result.readable:
                found.append(_error("FILE_UNREADABLE", "文件在检查过程中无法读取（可能被移动或正在写入），请重新提交"))
            return _refused(path, name, sha, kind, found)
        with zf if zf is not None else BytesZip(data) as zf:
            reader: _Reader | None = None
            try:
                reader = _Reader(data, zf)
                return _check_workbook(path, name, sha, kind, reader, found, model)
            except _Refusal as refusal:
                return _refused(path, name, sha, kind, [*found, *refusal.errors])
            finally:
                if reader is not None:
                    reader.close()
    except python_calamine.CalamineError:  # malformed XML, or a part larger than its header declares
        return _refused(path, name, sha, kind, [_error(
            "CORRUPT_WORKBOOK", "工作簿内容无法解析（内部结构损坏或与声明不符），请用下发的申报表重新保存后提交")])
    except (zipfile.BadZipFile, EOFError, OSError, ScreeningError):
        return _refused(path, name, sha, kind, [_error("CORRUPT_WORKBOOK", "文件已损坏或不完整，请重新保存后提交")])
    except BaseException as exc:  # noqa: BLE001 - a batch never stops for one file
        # pyo3 reports a Rust panic as PanicException, which derives from BaseException.
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        return _refused(path, name, sha, kind, [_error(
            "INTERNAL_ERROR", f"检查此文件时出现内部错误（{type(exc).__name__}），已跳过；请将文件转交技术人员")])
    finally:
        if zf is not None:
            zf.close()


def _check_workbook(path: Path, name: str, sha: str, kind: str, reader: _Reader, found: list[CheckError],
                    model: FormModel | None) -> FileReport:
    stamp = _read_stamp(reader)
    model, target = _identify(reader, stamp, model)
    lay = layout(model, target)

    # The form against its template, sheet by sheet: where the layout breaks, stop reading.
    cuts: dict[str, int] = {}
    for sl in lay.sheets:
        findings, cuts[sl.name] = compare_with_template(sl, reader.grid(sl.name), reader.scan(sl.name))
        found += findings

    def value_at(sheet: str, cell: str) -> Any:
        row, col = _ref(cell)
        return None if row >= cuts[sheet] else _value(reader.grids[sheet], row, col)

    reading = forms.reading_from_cells(model, target, stamp, list(reader.parts), value_at)
    where = {cell: pointer for pointer, cell in reading.cells.items()}
    reported: set[tuple[str, str]] = set()
    for sl in lay.sheets:
        scan, grid, cut = reader.scans[sl.name], reader.grids[sl.name], cuts[sl.name]
        for ref, f in sl.inputs.items():
            row, col = _ref(ref)
            if row >= cut:
                continue
            raw = _value(grid, row, col)
            hit = _cell_checks(f, raw, ref, scan)
            if hit:
                reported.add((sl.name, ref))
                pointer = where.get((sl.name, ref))
                found.append(_error(hit[0], hit[1], sheet=sl.name, cell=ref, field=f.label, pointer=pointer,
                                    value=_text_of(raw)))

    instance = reading.instance
    problems = forms.validate_instance(model, target, instance)
    # One error per cell: when the schema finds several (12.5 months is both "not a whole
    # number" and "more than 12"), the most basic one is the most helpful.
    problems.sort(key=lambda p: SCHEMA_PRIORITY.index(p.keyword) if p.keyword in SCHEMA_PRIORITY else len(SCHEMA_PRIORITY))
    for p in problems:
        sheet, cell, f, label = _locate(lay, reading, p.pointer)
        if sheet and cell and ((sheet, cell) in reported or _ref(cell)[0] >= cuts.get(sheet, 1 << 30)):
            continue  # that cell already has its error (one per cell), or is not read at all
        code = SCHEMA_CODES.get(p.keyword, "SCHEMA_VIOLATION")
        if code == "BAD_FORMAT" and p.keyword == "format" and f is not None and f.type == "credit_code":
            code = "CREDIT_CODE_CHECK_DIGIT"
        if sheet and cell:
            reported.add((sheet, cell))
        value = _at(instance, p.pointer)
        message = _schema_message(code, p, f, label, value)
        found.append(_error(code, message, sheet=sheet, cell=cell, field=f.label if f else None, pointer=p.pointer,
                            value=_text_of(value) if f is not None else None))

    awards: list[Award] = []
    if not any(e.severity == "error" for e in found):
        year = forms.declaration_year(instance)
        answers = forms.answers(instance)
        for clause_id, facts in forms.claims(instance, model):
            try:
                awards.append(compute(clause_id, {**facts, **answers}, year, policy=model.policy))
            except LanxiError as exc:
                clause = model.policy.clause(clause_id)
                art = model.article(clause.article)
                found.append(_error("ENGINE_REFUSED", f"{clause.cite}：{exc.message}", sheet=art.sheet))
    order = {s.name: i for i, s in enumerate(lay.sheets)}
    found.sort(key=lambda e: (e.sheet is not None, order.get(e.sheet or "", -1),
                              _ref(e.cell) if e.cell else (0, 0), e.code))
    errors = tuple(e for e in found if e.severity == "error")
    if errors:
        awards = []
    return FileReport(
        path=path, name=name, sha256=sha, kind=kind, stamp=reading.stamp, target=target, valid=not errors,
        errors=errors, flags=tuple(e for e in found if e.severity != "error"), instance=instance,
        awards=tuple(awards),
    )


# --- batches ----------------------------------------------------------------------------------

# (files done, files in the batch, the report, its annotated copy if one was made)
Progress = Callable[[int, int, FileReport, "Path | None"], None]


def expand_paths(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """Files to check with the name to show: a folder's workbooks (sorted, recursively,
    without hidden files and Excel lock files), a file as given whatever its type."""
    from .review import scan_folder

    out: list[tuple[Path, str]] = []
    for p in map(Path, paths):
        if p.is_dir():
            folder = scan_folder(p, WORKBOOK_SUFFIXES)
            out += [(f, f.relative_to(folder.root).as_posix()) for f in folder.files]
        else:
            out.append((p, p.name))
    return out


def annotation_target(path: Path, name: str, out_dir: Path) -> Path:
    """Where the annotated copy of ``path`` goes; refuses to write over or next to the input."""
    rel = Path(name)
    target = out_dir / (rel.with_suffix(".xlsx") if rel.suffix.lower() == ".xlsm" else rel)
    try:
        same = target.resolve() == path.resolve() or target.parent.resolve() == path.parent.resolve()
    except OSError:
        same = False
    if same:
        raise InputError("ANNOTATE_OVER_INPUT",
                         f"批注副本的输出文件夹不能是申报文件所在的文件夹（{path.parent}），请另选一个文件夹",
                         path=str(path))
    return target


def check_paths(paths: Iterable[Path], annotate_dir: Path | None = None,
                progress: Progress | None = None, model: FormModel | None = None) -> list[FileReport]:
    """Check every file (folders expanded, sorted) in this process; a bad file never stops the batch.

    Raises only for a bad argument (``ANNOTATE_OVER_INPUT``), before anything is checked.
    """
    paths = [Path(p) for p in paths]
    files = expand_paths(paths)
    if annotate_dir is not None:
        out = Path(annotate_dir).resolve()
        given = [p.resolve() for p in paths]
        if all(out != g and out not in g.parents for g in given):
            # OUT_DIR inside a checked folder: copies of an earlier run are not declarations.
            files = [(p, n) for p, n in files if out not in p.resolve().parents]
        for path, name in files:
            annotation_target(path, name, Path(annotate_dir))
    reports = []
    for n, (path, name) in enumerate(files, start=1):
        report = check_file(path, model, name)
        # Copies are for sending back: only a file with something to fix or note gets one.
        wanted = annotate_dir is not None and (report.errors or report.flags)
        copy = annotate(report, Path(annotate_dir)) if wanted else None
        reports.append(report)
        if progress is not None:
            progress(n, len(files), report, copy)
    return reports


# --- outputs ----------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # Decimal, dates and times calamine may hand over in odd cells


def report_to_json(report: FileReport) -> dict[str, Any]:
    """One file's result for machines (``lanxi-xl check --json`` prints a list of these)."""
    template = None
    if report.target is not None:
        template = {"name": report.template, "label": report.template_label,
                    **{k: report.stamp.get(k) for k in ("policy", "policy_id", "article", "template_version",
                                                        "schema_id")}}
    return {
        "file": report.name,
        "path": str(report.path),
        "sha256": report.sha256,
        "kind": report.kind,
        "template": template,
        "valid": report.valid,
        "errors": [e.to_dict() for e in report.errors],
        "flags": [e.to_dict() for e in report.flags],
        "data": _jsonable(report.instance) if report.instance is not None else None,
        "awards": [a.to_dict() for a in report.awards],
        "total": str(report.total) if report.valid and report.target is not None else None,
        "explanations": list(report.explanations),
    }


def checked_declaration(path: Path) -> CheckedDeclaration:
    """A returned workbook as the registry records it (review's source for .xlsx, .xlsm, .xls)."""
    report = check_file(Path(path))
    inst = report.instance or {}
    common = inst.get("common") or {}
    try:
        code: str | None = normalize_credit_code(common.get("credit_code"))
    except LanxiError:
        code = None
    name = common.get("enterprise_name") if isinstance(common.get("enterprise_name"), str) else None
    year = common.get("year") if isinstance(common.get("year"), int) and not isinstance(common.get("year"), bool) else None
    claims: tuple[Claim, ...] = ()
    if code and name and year is not None and report.target is not None:
        try:
            answers = forms.answers(inst)
            claims = tuple(Claim(code, name.strip(), year, clause_id, {**answers, **facts})
                           for clause_id, facts in forms.claims(inst))
        except (LanxiError, ValueError, TypeError, ArithmeticError, KeyError):
            claims = ()  # an invalid declaration whose figures cannot even be summed: recorded without claims
    errors = tuple({k: v for k, v in {**e.to_dict(), "cell": e.where or None}.items() if v is not None}
                   for e in report.problems)
    return CheckedDeclaration(
        sha256=report.sha256, file_name=path.name, template=report.template, valid=report.valid, errors=errors,
        data=_jsonable(inst), claims=claims, credit_code=code, enterprise=name, year=year,
    )


# --- the annotated copy --------------------------------------------------------------------------

ERROR_COLOR, WARNING_COLOR = "FFC7CE", "FFEB9C"


def annotate(report: FileReport, out_dir: Path) -> Path | None:
    """A copy of the workbook with each problem cell coloured and commented, and a sheet
    “审核意见” listing every finding, in ``out_dir`` under the file's name; never the input.

    None when the file cannot be opened safely (refused at screening, or too large for openpyxl).
    """
    target = annotation_target(report.path, report.name, Path(out_dir))
    if report.kind not in ("xlsx", "xlsm"):
        return None
    try:
        with zipfile.ZipFile(report.path) as zf:
            sheets = sum(i.file_size for i in zf.infolist() if i.filename.startswith("xl/worksheets/"))
    except (zipfile.BadZipFile, OSError):
        return None
    if sheets > ANNOTATE_MAX_SHEET_BYTES:
        return None
    try:
        return _write_annotated(report, target)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception:  # noqa: BLE001 - a copy that cannot be made is simply not made
        return None


def _write_annotated(report: FileReport, target: Path) -> Path:
    import openpyxl
    from openpyxl.comments import Comment
    from openpyxl.styles import Alignment, Font, PatternFill

    from .ledger import put_text
    from .templates import fit_height, page_setup, write_atomic  # the layout helpers the templates use

    # keep_vba=False: macros never leave; keep_links=False: external links are dropped.
    wb = openpyxl.load_workbook(report.path, keep_vba=False, keep_links=False, rich_text=False)
    for p in report.problems:
        if not (p.sheet and p.cell and p.sheet in wb.sheetnames):
            continue
        cell = wb[p.sheet][p.cell]
        if not hasattr(cell, "comment") or type(cell).__name__ == "MergedCell":
            continue
        cell.fill = PatternFill("solid", fgColor=ERROR_COLOR if p.severity == "error" else WARNING_COLOR)
        old = cell.comment.text + "\n" if cell.comment is not None and cell.comment.author == "兰溪市商务局审核" else ""
        comment = Comment(f"{old}[{p.code}] {p.message}", "兰溪市商务局审核")
        comment.width, comment.height = 320, 140
        cell.comment = comment
    if ANNOTATION_SHEET in wb.sheetnames:
        del wb[ANNOTATION_SHEET]
    ws = wb.create_sheet(ANNOTATION_SHEET, 0)
    for ws_other in wb.worksheets:
        ws_other.sheet_view.tabSelected = False
    ws.sheet_view.tabSelected = True
    wb.active = 0
    for col, width in zip("ABCDEFG", (6, 16, 26, 20, 70, 24, 8)):
        ws.column_dimensions[col].width = width
    put_text(ws, 1, 1, "审核意见").font = Font(bold=True, size=14)
    result = "通过" if report.valid else f"未通过（{len(report.errors)}处错误）"
    award = f"；预计奖励 {format_amount(report.total)}" if report.valid and report.awards else ""
    lines = [f"文件：{report.name}", f"模板：{report.template_label}", f"审核结果：{result}{award}",
             "标红的单元格有错误、标橙的有提示，单元格批注说明了问题；请在原申报表中改正后重新提交。"]
    for n, text in enumerate(lines, start=2):
        put_text(ws, n, 1, text)
    head = len(lines) + 3
    for col, text in enumerate(("序号", "位置", "项目", "填写内容", "问题", "代码", "级别"), start=1):
        put_text(ws, head, col, text).font = Font(bold=True)
    for n, p in enumerate(report.problems, start=1):
        row = head + n
        ws.cell(row=row, column=1, value=n)
        put_text(ws, row, 2, p.where or "整个文件")
        put_text(ws, row, 3, p.field or "")
        put_text(ws, row, 4, p.value or "")  # what the enterprise typed, "=…" included, as text
        put_text(ws, row, 5, p.message).alignment = Alignment(wrap_text=True, vertical="top")
        fit_height(ws, row, p.message, 70)  # LibreOffice does not grow wrapped rows by itself
        put_text(ws, row, 6, p.code)
        put_text(ws, row, 7, "错误" if p.severity == "error" else "提示")
    ws.freeze_panes = ws.cell(row=head + 1, column=1)
    page_setup(ws, "G", head + len(report.problems), landscape=True)  # A4, one page wide, as the templates
    ws.sheet_view.showGridLines = True
    buffer = io.BytesIO()
    wb.save(buffer)
    write_atomic(target, buffer.getvalue())
    return target


# --- what the terminal shows ----------------------------------------------------------------------


def summary_line(report: FileReport) -> str:
    mark = "✓" if report.valid else "✗"
    if report.valid and report.awards:
        parts = "、".join(f"{a.cite} {format_amount(a.amount)}" if a.status is Status.PAYABLE
                         else f"{a.cite} {STATUS_ZH[a.status]}" for a in report.awards)
        tail = f"奖励 {format_amount(report.total)}（{parts}）"
    elif report.valid:
        tail = "无可计算的奖励"
    else:
        tail = f"{len(report.errors)}处错误，未计算奖励"
    flags = f"，{len(report.flags)}处提示" if report.flags else ""
    return f"{mark} {report.name}  {report.template_label}  {tail}{flags}"


def format_report(report: FileReport, explain: bool = False) -> str:
    lines = [summary_line(report)]
    lines += [f"  {e.line()}" for e in report.errors]
    lines += [f"  提示 {e.line()}" for e in report.flags]
    if explain:
        for text in report.explanations:
            lines += [f"    {line}" for line in text.splitlines()]
    return "\n".join(lines)


def format_summary(reports: Sequence[FileReport]) -> str:
    ok = [r for r in reports if r.valid]
    total = sum((r.total for r in ok), ZERO)
    return (f"共检查{len(reports)}份：通过{len(ok)}份，未通过{len(reports) - len(ok)}份；"
            f"通过的申报预计奖励合计 {format_amount(total)}")


def dumps(reports: Sequence[FileReport]) -> str:
    return json.dumps([report_to_json(r) for r in reports], ensure_ascii=False, indent=2, default=str)
