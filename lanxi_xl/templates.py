"""Declaration workbooks (申报表), the formula calculator, and filling a workbook from JSON.

Everything is generated from the form model (:mod:`lanxi_xl.forms`) and the policy
data; the live estimate in each article sheet is compiled from the policy's award
trees by :mod:`lanxi_xl.formulas`, so a template shows what the engine pays without
our add-in, in Excel, WPS and LibreOffice alike.

Output is byte-for-byte reproducible: the core properties carry a fixed date, every
zip entry a fixed timestamp, and nothing depends on dict order we do not control.
A test regenerates ``schemas/`` and ``templates/`` and compares them with the
committed files.

What survives a LibreOffice round trip (and why some choices below were made) is
recorded in docs/xlsx-findings.md.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.packaging.custom import CustomPropertyList, StringProperty
from openpyxl.styles import Alignment, Border, Font, PatternFill, Protection, Side
from openpyxl.workbook.defined_name import DefinedName
from openpyxl.workbook.protection import WorkbookProtection
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.hyperlink import Hyperlink
from openpyxl.worksheet.properties import PageSetupProperties
from openpyxl.worksheet.worksheet import Worksheet

from .errors import InputError
from .forms import (
    CREDIT_CODE_CHARS,
    CREDIT_CODE_WEIGHTS,
    GENERATOR,
    HELP_COL,
    INPUT_COL,
    LABEL_COL,
    LISTS_SHEET,
    META_SHEET,
    UNIT_COL,
    ArticleForm,
    Field,
    FormModel,
    fact_field,
    absolute,
    build_schemas,
    check_instance,
    col_letter,
    json_to_cell,
    list_id,
    load_model,
    schema_dir,
    schema_text,
    target_name,
)
from .formulas import award_formula, disqualified_formula, item_formula, text_literal

CALCULATOR = "calculator"

# Looks: yellow = type here, grey = computed, green = the estimate.
INPUT_FILL = PatternFill("solid", fgColor="FFF2CC")
COMPUTED_FILL = PatternFill("solid", fgColor="EDEDED")
ESTIMATE_FILL = PatternFill("solid", fgColor="E2EFDA")
HEADER_FILL = PatternFill("solid", fgColor="D9E1F2")
THIN = Side(style="thin", color="A6A6A6")
BOX = Border(left=THIN, right=THIN, top=THIN, bottom=THIN)
WRAP = Alignment(wrap_text=True, vertical="center")
WRAP_TOP = Alignment(wrap_text=True, vertical="top")
CENTER = Alignment(horizontal="center", vertical="center", wrap_text=True)
TITLE_FONT = Font(bold=True, size=15)
BOLD = Font(bold=True)
ESTIMATE_FONT = Font(bold=True, size=13, color="375623")
WARN_FONT = Font(bold=True, color="C00000")
NOTE_FONT = Font(size=9, color="595959")

NUMBER_FORMATS = {
    "money": "#,##0.00",
    "usd": "#,##0.00",
    "number": "General",
    "integer": "0",
    "year": "0",
    "rate": "0.00%",
    "date": "yyyy-mm-dd",
    "text": "@",
    "credit_code": "@",
    "mobile": "@",
}
ARTICLE_WIDTHS = {"A": 6, "B": 30, "C": 18, "D": 14, "E": 16, "F": 16, "G": 16, "H": 30}
LAST_COL = "H"
COVER_WIDTHS = {"A": 6, "B": 34, "C": 26, "D": 16, "E": 56}


# --- small helpers -------------------------------------------------------------------


def _lines(text: str, width: float) -> int:
    """Printed lines of ``text`` in a column ``width`` characters wide (CJK counts double)."""
    units = sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)
    return max(1, math.ceil(units / max(width - 2, 1)))


def fit_height(ws: Worksheet, row: int, text: str, width: float, line: float = 15.0) -> None:
    """LibreOffice does not grow merged rows to fit: set the height from the text."""
    needed = _lines(text, width) * line + 3
    current = ws.row_dimensions[row].height or 0
    ws.row_dimensions[row].height = max(current, needed, 18)


def _width(widths: Mapping[str, float], first: str, last: str) -> float:
    cols = [col_letter(i) for i in range(_col_index(first), _col_index(last) + 1)]
    return sum(widths.get(c, 9) for c in cols)


def _col_index(letter: str) -> int:
    n = 0
    for ch in letter:
        n = n * 26 + ord(ch) - 64
    return n


def _put(ws: Worksheet, ref: str, value: Any, *, font: Font | None = None, fill: PatternFill | None = None,
         align: Alignment | None = None, border: bool = False, fmt: str | None = None) -> None:
    cell = ws[ref]
    cell.value = value
    if isinstance(value, str) and not value.startswith("="):
        cell.data_type = "s"
    if font:
        cell.font = font
    if fill:
        cell.fill = fill
    if align:
        cell.alignment = align
    if border:
        cell.border = BOX
    if fmt:
        cell.number_format = fmt


def _text(ws: Worksheet, ref: str, value: str, **kw: Any) -> None:
    """Text that must stay text even if it starts with '=' (no formula injection)."""
    _put(ws, ref, value, **kw)
    ws[ref].data_type = "s"


def _merge(ws: Worksheet, first: str, last: str, row: int) -> None:
    if first != last:
        ws.merge_cells(f"{first}{row}:{last}{row}")


def _input(ws: Worksheet, ref: str, f: Field) -> None:
    cell = ws[ref]
    cell.fill = INPUT_FILL
    cell.border = BOX
    cell.protection = Protection(locked=False)
    cell.number_format = NUMBER_FORMATS.get(f.type, "General")
    cell.alignment = Alignment(vertical="center", horizontal="left" if f.type in ("text", "choice", "bool",
                                                                                  "credit_code", "mobile") else
                               "right")


def _computed(ws: Worksheet, ref: str, formula: str, fmt: str = "#,##0.00") -> None:
    _put(ws, ref, formula, fill=COMPUTED_FILL, border=True, fmt=fmt)


def _name(ws: Worksheet, name: str, ref: str) -> None:
    """A sheet-scoped defined name (survives LibreOffice with its scope, see xlsx-findings §1)."""
    ws.defined_names[name] = DefinedName(name, attr_text=f"{_quote(ws.title)}!{ref}")


def _quote(sheet: str) -> str:
    return "'" + sheet.replace("'", "''") + "'"


def _unit_text(f: Field) -> str:
    if f.type == "rate":
        return "%"
    if f.type in ("bool", "choice"):
        return "下拉选择"
    return f.unit


def _rule_text(f: Field, first_year: int, last_year: int) -> str:
    if f.type in ("money", "usd", "number"):
        low = f.minimum or 0
        high = f"、不大于{f.maximum}" if f.maximum is not None else ""
        return f"应为不小于{low}{high}的数字" + (f"（单位：{f.unit}）" if f.unit else "")
    if f.type == "integer":
        return f"应为{f.minimum}至{f.maximum}之间的整数" if f.maximum is not None else f"应为不小于{f.minimum}的整数"
    if f.type == "rate":
        return "应为0%至100%之间的百分比，如 85%"
    if f.type in ("bool", "choice"):
        return "请从下拉列表中选择"
    if f.type == "date":
        return "应为日期，如 2023-05-01"
    if f.type == "year":
        return f"应为{first_year}至{last_year}之间的年份"
    if f.type == "credit_code":
        return "应为18位（数字或大写字母）"
    if f.type == "mobile":
        return "应为11位数字"
    return f"不超过{f.max_length}个字符" if f.max_length else "请填写文字"


def _validation(model: FormModel, f: Field, lists: Mapping[str, str]) -> DataValidation:
    """Excel/WPS/LibreOffice data validation with a stop alert for one field."""
    policy = model.policy
    first_year = policy.first_year
    last_year = policy.effective_until.year if policy.effective_until else 2099
    kw: dict[str, Any] = {}
    if f.type in ("money", "usd", "number", "rate"):
        low = f.minimum if f.minimum is not None else 0
        if f.maximum is not None:
            kw = dict(type="decimal", operator="between", formula1=str(low), formula2=str(f.maximum))
        else:
            kw = dict(type="decimal", operator="greaterThanOrEqual", formula1=str(low))
    elif f.type == "integer":
        low = f.minimum if f.minimum is not None else 0
        if f.maximum is not None:
            kw = dict(type="whole", operator="between", formula1=str(low), formula2=str(f.maximum))
        else:
            kw = dict(type="whole", operator="greaterThanOrEqual", formula1=str(low))
    elif f.type == "year":
        kw = dict(type="whole", operator="between", formula1=str(f.minimum or first_year),
                  formula2=str(f.maximum or last_year))
    elif f.type in ("bool", "choice"):
        # A range on the hidden list sheet, never an inline list (Excel's 255-character limit).
        kw = dict(type="list", formula1=lists[list_id(f)])
    elif f.type == "date":
        kw = dict(type="date", operator="between", formula1="DATE(2000,1,1)", formula2="DATE(2099,12,31)")
    elif f.type == "credit_code":
        kw = dict(type="textLength", operator="equal", formula1="18")
    elif f.type == "mobile":
        kw = dict(type="textLength", operator="equal", formula1="11")
    elif f.max_length:
        kw = dict(type="textLength", operator="lessThanOrEqual", formula1=str(f.max_length))
    else:
        kw = dict(type="textLength", operator="greaterThanOrEqual", formula1="0")
    dv = DataValidation(allow_blank=True, showErrorMessage=True, showInputMessage=True, errorStyle="stop", **kw)
    dv.errorTitle = "输入有误"
    dv.error = f"「{f.label}」{_rule_text(f, first_year, last_year)}"[:255]
    dv.promptTitle = f.label[:32]  # Excel's limits: title 32, message 255 characters
    dv.prompt = (f.help or _rule_text(f, first_year, last_year))[:255]
    return dv


class _Sheet:
    """Adds fields with their validation, name and style to one worksheet."""

    def __init__(self, model: FormModel, ws: Worksheet, lists: Mapping[str, str]) -> None:
        self.model, self.ws, self.lists = model, ws, lists
        self.validations: list[DataValidation] = []

    def validate(self, f: Field, ref: str) -> None:
        dv = _validation(self.model, f, self.lists)
        dv.add(ref)
        self.validations.append(dv)

    def finish(self) -> None:
        for dv in self.validations:
            self.ws.add_data_validation(dv)


def page_setup(ws: Worksheet, last_col: str, last_row: int, landscape: bool = False) -> None:
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.orientation = ws.ORIENTATION_LANDSCAPE if landscape else ws.ORIENTATION_PORTRAIT
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0  # as many pages tall as needed (xlsx-findings §7)
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    ws.print_area = f"A1:{last_col}{last_row}"
    ws.page_margins.left = ws.page_margins.right = 0.5
    ws.page_margins.top = ws.page_margins.bottom = 0.6
    ws.oddFooter.center.text = "第 &P 页，共 &N 页"
    ws.sheet_view.showGridLines = False


def _protect(ws: Worksheet) -> None:
    # Guidance, not security: no password, so staff can unprotect from the menu.
    ws.protection.sheet = True


# --- the cover sheet -----------------------------------------------------------------


def credit_code_check_formula(cell: str) -> str:
    """A cell formula that checks a 统一社会信用代码 with the GB 32100-2015 check digit."""
    chars = text_literal(CREDIT_CODE_CHARS)
    terms = "+".join(f"(FIND(MID({cell},{i},1),{chars})-1)*{w}" for i, w in enumerate(CREDIT_CODE_WEIGHTS, 1))
    expected = f"MID({chars},MOD(31-MOD({terms},31),31)+1,1)"
    return (
        f'=IF({cell}="","",IF(LEN({cell})<>18,"✗ 应为18位",'
        f'IF(ISERROR({terms}),"✗ 含无效字符",'
        f'IF(EXACT(MID({cell},18,1),{expected}),"✓ 校验位正确","✗ 校验位错误"))))'
    )


def _write_cover(wb: Workbook, model: FormModel, arts: Sequence[ArticleForm], lists: Mapping[str, str],
                 disq: str) -> Worksheet:
    ws = wb.active
    ws.title = model.cover_sheet
    for col, width in COVER_WIDTHS.items():
        ws.column_dimensions[col].width = width
    policy = model.policy
    _text(ws, "A1", model.cover_title, font=TITLE_FONT, align=CENTER)
    _merge(ws, "A", "E", 1)
    ws.row_dimensions[1].height = 30
    _text(ws, "A2", f"依据：{policy.id}《{policy.title}》　　申报表模板版本：{model.template_version}",
          align=CENTER, font=NOTE_FONT)
    _merge(ws, "A", "E", 2)
    _text(ws, "A3", "填写说明", font=BOLD)
    for i, line in enumerate(model.instructions):
        row = 4 + i
        _text(ws, f"A{row}", f"{i + 1}. {line}", align=WRAP)
        _merge(ws, "A", "E", row)
        fit_height(ws, row, line, _width(COVER_WIDTHS, "A", "E"))
    sheet = _Sheet(model, ws, lists)

    def section(row: int, title: str, head: Sequence[str]) -> None:
        _text(ws, f"A{row}", title, font=BOLD)
        _merge(ws, "A", "E", row)
        for col, text in zip("ABCDE", head):
            _text(ws, f"{col}{row + 1}", text, font=BOLD, fill=HEADER_FILL, align=CENTER, border=True)

    def field_row(n: int, f: Field, label: str) -> None:
        row = int(f.cell[1:])
        _put(ws, f"A{row}", n, align=CENTER, border=True)
        _text(ws, f"B{row}", label, align=WRAP, border=True)
        _input(ws, f.cell, f)
        _text(ws, f"D{row}", _unit_text(f), align=CENTER, border=True)
        _text(ws, f"E{row}", f.help, align=WRAP, border=True, font=NOTE_FONT)
        fit_height(ws, row, f.help, COVER_WIDTHS["E"], 13)
        fit_height(ws, row, label, COVER_WIDTHS["B"])
        sheet.validate(f, f.cell)
        _name(ws, f.name, absolute(f.cell))

    first = int(model.common[0].cell[1:])
    section(first - 2, model.common_title, ("序号", "项目", "填写内容", "单位/校验", "填写说明"))
    for n, f in enumerate(model.common, 1):
        field_row(n, f, f.label)
        if f.type == "credit_code":
            row = int(f.cell[1:])
            _put(ws, f"D{row}", credit_code_check_formula(absolute(f.cell)), align=CENTER, border=True,
                 fill=COMPUTED_FILL)
    first = int(model.attestations[0].cell[1:])
    section(first - 2, model.attestation_title, ("序号", model.attestation_prompt, "填写内容", "单位", "说明"))
    for n, f in enumerate(model.attestations, 1):
        field_row(n, f, f.label)

    row = model.summary_first_row
    section(row, model.summary_title, ("条款", "奖励名称", "预计奖励（元）", "工作表", "说明"))
    row += 1
    for art in arts:
        row += 1
        sheet_ref = _quote(art.sheet)
        _text(ws, f"A{row}", f"第{art.article}条", align=CENTER, border=True)
        _text(ws, f"B{row}", art.title, align=WRAP, border=True)
        _put(ws, f"C{row}", f"={sheet_ref}!{absolute(art.estimate_cell)}", fill=ESTIMATE_FILL, border=True,
             fmt="#,##0.00", font=BOLD)
        _text(ws, f"D{row}", art.sheet, align=CENTER, border=True, font=Font(color="0563C1", underline="single"))
        ws[f"D{row}"].hyperlink = Hyperlink(ref=f"D{row}", location=f"{sheet_ref}!A1", display=art.sheet)
        _text(ws, f"E{row}", "在该工作表填写；未填写的条款显示为空", align=WRAP, border=True, font=NOTE_FONT)
    row += 1
    _put(ws, f"A{row}", f'=IF({disq},"⚠ 第{policy.disqualification_article}条承诺事项中存在不得享受情形，'
                        f'各项预计奖励均为0","")', font=WARN_FONT)
    _merge(ws, "A", "E", row)
    sheet.finish()
    page_setup(ws, "E", row)
    _protect(ws)
    return ws


# --- an article sheet ----------------------------------------------------------------


def _write_article(wb: Workbook, model: FormModel, art: ArticleForm, lists: Mapping[str, str], disq: str) -> Worksheet:
    ws = wb.create_sheet(art.sheet)
    for col, width in ARTICLE_WIDTHS.items():
        ws.column_dimensions[col].width = width
    policy = model.policy
    clauses = [policy.clauses[c] for c in art.clauses]
    sheet = _Sheet(model, ws, lists)
    full = _width(ARTICLE_WIDTHS, "A", LAST_COL)
    help_width = _width(ARTICLE_WIDTHS, HELP_COL, LAST_COL)

    _text(ws, "A1", f"第{art.article}条 {art.title} 申报表", font=TITLE_FONT, align=CENTER)
    _merge(ws, "A", LAST_COL, 1)
    ws.row_dimensions[1].height = 30
    for i, c in enumerate(clauses):
        row = 2 + i
        text = f"{c.cite}原文：{c.text}"
        _text(ws, f"A{row}", text, align=WRAP_TOP, font=NOTE_FONT)
        _merge(ws, "A", LAST_COL, row)
        fit_height(ws, row, text, full, 13)

    # The estimate: per clause (multi-clause articles show each part), then the article.
    def ref(fact: str) -> str:
        return art.fact_cell(fact)

    def items_total(items: str) -> str:
        table = next(t for t in art.tables if t.items == items)
        assert table.item_column is not None
        return f"SUM({table.range(table.item_column)})"

    parts: dict[str, str] = {}
    for c in clauses:
        parts[c.id] = award_formula(c, ref, items_total)[1:]
    inputs = [absolute(f.cell) for f in art.fields] + [t.input_range for t in art.tables]
    blank = f"COUNTA({','.join(inputs)})=0"
    if len(clauses) == 1:
        body = parts[clauses[0].id]
    else:
        for c in clauses:
            cell = art.clause_cells[c.id]
            row = int(cell[1:])
            _text(ws, f"{LABEL_COL}{row}", f"其中：{c.cite} {c.title}", align=WRAP, border=True)
            _put(ws, cell, "=" + parts[c.id], fill=COMPUTED_FILL, border=True, fmt="#,##0.00")
            _text(ws, f"{UNIT_COL}{row}", "元", align=CENTER, border=True)
            _text(ws, f"{HELP_COL}{row}", "按本款计算（未计第15条）；未申报本款时为空", font=NOTE_FONT, align=WRAP)
            _merge(ws, HELP_COL, LAST_COL, row)
            _name(ws, f"award_{c.id.replace('.', '_')}", absolute(cell))
        cells = [absolute(art.clause_cells[c.id]) for c in clauses]
        all_blank = ",".join(f'{x}=""' for x in cells)
        body = f'IF(AND({all_blank}),"",SUM({",".join(cells)}))'
    row = int(art.estimate_cell[1:])
    _text(ws, f"{LABEL_COL}{row}", "预计奖励金额", font=ESTIMATE_FONT, align=WRAP, border=True)
    _put(ws, art.estimate_cell, f'=IF({blank},"",IF({disq},0,{body}))', font=ESTIMATE_FONT, fill=ESTIMATE_FILL,
         border=True, fmt="#,##0.00")
    _text(ws, f"{UNIT_COL}{row}", "元", align=CENTER, border=True)
    _text(ws, f"{HELP_COL}{row}", "根据本表填写内容按政策自动计算，仅供参考，以审核结果为准", font=NOTE_FONT, align=WRAP)
    _merge(ws, HELP_COL, LAST_COL, row)
    ws.row_dimensions[row].height = 24
    _name(ws, "award_estimate", absolute(art.estimate_cell))
    status_row = int(art.status_cell[1:])
    _put(ws, art.status_cell, f'=IF({disq},"⚠ 申报信息表中第{policy.disqualification_article}条承诺事项存在不得享受'
                              f'情形，预计奖励为0","")', font=WARN_FONT)
    _merge(ws, LABEL_COL, LAST_COL, status_row)

    # The fields.
    header = art.first_row_of["header"]
    if art.fields:
        for col, text in zip(("A", LABEL_COL, INPUT_COL, UNIT_COL, HELP_COL),
                             ("序号", "申报项", "填报内容", "单位", "填写说明")):
            _text(ws, f"{col}{header}", text, font=BOLD, fill=HEADER_FILL, align=CENTER, border=True)
        _merge(ws, HELP_COL, LAST_COL, header)
    for c in clauses:
        anchor = art.first_row_of.get(f"clause:{c.id}")
        if anchor:
            _text(ws, f"A{anchor}", f"{c.cite} {c.title}", font=BOLD)
            _merge(ws, "A", LAST_COL, anchor)
    for n, f in enumerate(art.fields, 1):
        row = int(f.cell[1:])
        _put(ws, f"A{row}", n, align=CENTER, border=True)
        _text(ws, f"{LABEL_COL}{row}", f.label, align=WRAP, border=True)
        _input(ws, f.cell, f)
        _text(ws, f"{UNIT_COL}{row}", _unit_text(f), align=CENTER, border=True)
        help_text = f.help + ("（可不填，不填按“是”）" if f.type == "bool" and not f.required else
                              "（可不填，不填按0）" if not f.required else "")
        _text(ws, f"{HELP_COL}{row}", help_text, align=WRAP, border=True, font=NOTE_FONT)
        _merge(ws, HELP_COL, LAST_COL, row)
        fit_height(ws, row, help_text, help_width, 13)
        fit_height(ws, row, f.label, ARTICLE_WIDTHS[LABEL_COL])
        sheet.validate(f, f.cell)
        _name(ws, f.name, absolute(f.cell))

    # The detail tables.
    for t in art.tables:
        title_row = art.first_row_of[f"table:{t.key}"]
        text = f"{t.label}：{t.help}（最多{t.rows}行）"
        _text(ws, f"A{title_row}", text, font=BOLD, align=WRAP)
        _merge(ws, "A", LAST_COL, title_row)
        head = title_row + 1
        _text(ws, f"A{head}", "序号", font=BOLD, fill=HEADER_FILL, align=CENTER, border=True)
        widest = 0
        for c in t.columns:
            label = f"{c.label}（{_unit_text(c)}）" if _unit_text(c) else c.label
            _text(ws, f"{c.cell}{head}", label, font=BOLD, fill=HEADER_FILL, align=CENTER, border=True)
            widest = max(widest, _lines(label, ARTICLE_WIDTHS.get(c.cell, 16)))
            sheet.validate(c, f"{c.cell}{t.first_row}:{c.cell}{t.last_row}")
            _name(ws, c.name, t.range(c.key))
        clause = next((cl for cl in clauses if t.items and t.items in cl.facts), None)
        if t.item_column and clause is not None:
            label = "本行预计补助（元）"
            _text(ws, f"{t.item_column}{head}", label, font=BOLD, fill=HEADER_FILL, align=CENTER, border=True)
            _name(ws, f"lx_{t.key}_award", t.range(t.item_column))
        ws.row_dimensions[head].height = max(18, widest * 15 + 3)
        helpers = [d for d in art.derived if d.table == t.key and d.fact in t.helper_columns]
        for d in helpers:
            col = t.helper_columns[d.fact]
            _text(ws, f"{col}{head}", f"（辅助）{d.label}", font=NOTE_FONT)
            ws.column_dimensions[col].hidden = True
        for i in range(t.rows):
            row = t.first_row + i
            _put(ws, f"A{row}", i + 1, align=CENTER, border=True)
            for c in t.columns:
                _input(ws, f"{c.cell}{row}", c)
            if t.item_column and clause is not None:
                formula = item_formula(clause, t.items, lambda item, r=row: f"${t.column(item).cell}{r}")
                _computed(ws, f"{t.item_column}{row}", "=" + formula)
            for d in helpers:
                kind_col = t.column(next(iter(d.where)))
                tests = [f'${kind_col.cell}{row}={text_literal(kind_col.option_label(k) or k)}'
                         for k in d.where[kind_col.key]]
                test = tests[0] if len(tests) == 1 else f"OR({','.join(tests)})"
                value_col = t.column(d.column).cell
                _put(ws, f"{t.helper_columns[d.fact]}{row}", f"=IF({test},${value_col}{row},0)")

    # What the tables add up to: the engine's facts, labelled as the policy labels them.
    if art.derived:
        anchor = art.first_row_of["derived"]
        _text(ws, f"A{anchor}", "汇总（根据明细自动计算，用于计算奖励）", font=BOLD)
        _merge(ws, "A", LAST_COL, anchor)
        for n, d in enumerate(art.derived, 1):
            row = int(d.cell[1:])
            t = art.table(d.table)
            if d.kind == "max":
                formula = f"=MAX({t.range(d.column)})"
            elif d.fact in t.helper_columns:
                formula = f"=SUM({t.range(t.helper_columns[d.fact])})"
            else:
                formula = f"=SUM({t.range(d.column)})"
            _put(ws, f"A{row}", n, align=CENTER, border=True)
            _text(ws, f"{LABEL_COL}{row}", d.label, align=WRAP, border=True)
            _computed(ws, d.cell, formula, fmt=NUMBER_FORMATS.get(d.type, "General"))
            _text(ws, f"{UNIT_COL}{row}", d.unit, align=CENTER, border=True)
            _text(ws, f"{HELP_COL}{row}", d.help, align=WRAP, border=True, font=NOTE_FONT)
            _merge(ws, HELP_COL, LAST_COL, row)
            _name(ws, d.name, absolute(d.cell))

    sheet.finish()
    page_setup(ws, LAST_COL, art.first_row_of["end"])
    _protect(ws)
    return ws


# --- hidden sheets and the stamp -----------------------------------------------------


def _write_lists(wb: Workbook, values: Mapping[str, Sequence[str]]) -> dict[str, str]:
    ws = wb.create_sheet(LISTS_SHEET)
    ranges: dict[str, str] = {}
    for n, (lid, options) in enumerate(values.items(), start=1):
        col = col_letter(n)
        for i, option in enumerate(options, start=1):
            _text(ws, f"{col}{i}", option)
        ranges[lid] = f"{_quote(LISTS_SHEET)}!${col}$1:${col}${len(options)}"
    ws.sheet_state = "hidden"
    _protect(ws)
    return ranges


def stamp(model: FormModel, target: str) -> dict[str, str]:
    """What identifies a workbook: in the hidden _meta sheet and the custom properties."""
    if target == CALCULATOR:
        schema_id = ""
    else:
        schema_id = model.schema_id(target_name(target))
    return {
        "policy_id": model.policy.id,
        "policy": model.policy.key,
        "article": target,
        "template_version": model.template_version,
        "schema_id": schema_id,
        "layout_sha256": model.layout_digest(),
        "generator": GENERATOR,
    }


def _write_meta(wb: Workbook, model: FormModel, target: str, fields: Iterable[tuple[str, str, str, str, str]]) -> None:
    ws = wb.create_sheet(META_SHEET)
    values = stamp(model, target)
    _text(ws, "A1", "key")
    _text(ws, "B1", "value")
    row = 1
    for key, value in values.items():
        row += 1
        _text(ws, f"A{row}", key)
        _text(ws, f"B{row}", value)
    row += 2
    for col, head in zip("ABCDE", ("pointer", "sheet", "cell", "type", "label")):
        _text(ws, f"{col}{row}", head)
    for entry in fields:
        row += 1
        for col, value in zip("ABCDE", entry):
            _text(ws, f"{col}{row}", value)
    ws.column_dimensions["A"].width = 40
    ws.column_dimensions["B"].width = 60
    # veryHidden in Excel; LibreOffice saves it back as plain hidden (xlsx-findings §3).
    ws.sheet_state = "veryHidden"
    _protect(ws)
    props = CustomPropertyList()
    for key, value in values.items():
        props.append(StringProperty(name=f"lanxi.{key}", value=value))  # strings only (xlsx-findings §2)
    wb.custom_doc_props = props


def _finish_workbook(wb: Workbook, model: FormModel, title: str) -> None:
    fixed = dt.datetime.combine(model.policy.effective_from, dt.time())
    wb.properties.created = fixed
    wb.properties.modified = fixed
    wb.properties.creator = GENERATOR
    wb.properties.lastModifiedBy = None
    wb.properties.title = title
    wb.properties.subject = model.policy.id
    # Structure lock keeps the hidden sheets hidden and the sheet names fixed (no password).
    wb.security = WorkbookProtection(lockStructure=True)
    wb.active = 0


def _field_map(model: FormModel, arts: Sequence[ArticleForm]) -> list[tuple[str, str, str, str, str]]:
    rows = [(f.pointer, f.sheet, f.cell, f.type, f.label) for f in model.all_fields]
    for art in arts:
        rows += [(f.pointer, f.sheet, f.cell, f.type, f.label) for f in art.fields]
        for t in art.tables:
            rows += [(f"{t.pointer}/*/{c.key}", t.sheet, f"{c.cell}{t.first_row}:{c.cell}{t.last_row}", c.type,
                      c.label) for c in t.columns]
        rows.append((f"#/estimate/{art.key}", art.sheet, art.estimate_cell, "money", "预计奖励金额"))
    return rows


def build_workbook(model: FormModel, target: str = "all") -> Workbook:
    """The declaration workbook for one article ("8") or for all of them ("all")."""
    arts = list(model.articles.values()) if target == "all" else [model.article(target)]
    wb = Workbook()
    list_values = {lid: values for lid, values in model.list_values.items()
                   if lid == "yes_no" or lid.split(":")[0] in {model.cover_sheet, *(a.sheet for a in arts)}}
    cover_cells = {f.fact or f.key: f"{_quote(model.cover_sheet)}!{absolute(f.cell)}" for f in model.attestations}
    # The lists sheet is written after the article sheets; its ranges are known beforehand.
    lists = {lid: f"{_quote(LISTS_SHEET)}!${col_letter(n)}$1:${col_letter(n)}${len(v)}"
             for n, (lid, v) in enumerate(list_values.items(), start=1)}
    disq_cover = disqualified_formula(model.policy, lambda name: absolute(next(
        f.cell for f in model.attestations if (f.fact or f.key) == name)))
    _write_cover(wb, model, arts, lists, disq_cover)
    disq = disqualified_formula(model.policy, lambda name: cover_cells[name])
    for art in arts:
        _write_article(wb, model, art, lists, disq)
    written = _write_lists(wb, list_values)
    assert written == lists
    _write_meta(wb, model, target, _field_map(model, arts))
    title = f"{model.cover_title}（{'全部条款' if target == 'all' else f'第{target}条'}）"
    _finish_workbook(wb, model, title)
    return wb


# --- the calculator ------------------------------------------------------------------


@dataclass(frozen=True)
class CalculatorRow:
    """Where one clause's inputs and award sit in the calculator (for tests and docs)."""

    clause: str
    award_cell: str
    cells: Mapping[str, str]  # fact -> input cell; items facts: "events[i].cost"
    items: int = 0


CALC_SHEET = "计算器"
CALC_ITEMS = 10
CALC_FIRST_INPUT_COL = 4  # D


def calculator_layout(model: FormModel) -> tuple[dict[str, str], list[CalculatorRow]]:
    """Cells of the calculator: the art. 15 answers, then two (or three) rows per clause."""
    dq = {f.fact or f.key: f"{col_letter(CALC_FIRST_INPUT_COL + i)}6" for i, f in enumerate(model.attestations)}
    rows: list[CalculatorRow] = []
    row = 9
    for clause in model.policy.clauses.values():
        cells: dict[str, str] = {}
        n_items = 0
        col = CALC_FIRST_INPUT_COL
        extra = 0
        for name, spec in clause.facts.items():
            if spec.type == "items":
                n_items = CALC_ITEMS
                keys = list(spec.items)
                for i in range(CALC_ITEMS):
                    for j, item in enumerate(keys):
                        cells[f"{name}[{i}].{item}"] = f"{col_letter(col + i)}{row + 1 + j}"
                extra = max(extra, len(keys) - 1)
                col += CALC_ITEMS
            else:
                cells[name] = f"{col_letter(col)}{row + 1}"
                col += 1
        rows.append(CalculatorRow(clause.id, f"C{row + 1}", cells, n_items))
        row += 2 + extra + (1 if n_items else 0) + 1
    return dq, rows


def build_calculator(model: FormModel) -> Workbook:
    """Every clause as a row of inputs and a native-formula award: for staff without the add-in."""
    policy = model.policy
    wb = Workbook()
    ws = wb.active
    ws.title = CALC_SHEET
    widths = {"A": 12, "B": 26, "C": 16}
    for i in range(CALC_ITEMS):
        widths[col_letter(CALC_FIRST_INPUT_COL + i)] = 15
    for col, width in widths.items():
        ws.column_dimensions[col].width = width
    last_col = col_letter(CALC_FIRST_INPUT_COL + CALC_ITEMS - 1)
    dq_cells, rows = calculator_layout(model)

    choice_fields: dict[str, Field] = {}
    for clause in policy.clauses.values():
        for name, spec in clause.facts.items():
            if spec.type == "choice":
                choice_fields[name] = fact_field(spec, sheet=CALC_SHEET, cell="", pointer=name)
    list_values: dict[str, Sequence[str]] = {"yes_no": ("是", "否")}
    for f in choice_fields.values():
        list_values[list_id(f)] = tuple(o.label for o in f.options)
    lists = {lid: f"{_quote(LISTS_SHEET)}!${col_letter(n)}$1:${col_letter(n)}${len(v)}"
             for n, (lid, v) in enumerate(list_values.items(), start=1)}
    sheet = _Sheet(model, ws, lists)

    _text(ws, "A1", "兰溪市电子商务奖励计算器（公式版）", font=TITLE_FONT, align=CENTER)
    _merge(ws, "A", last_col, 1)
    ws.row_dimensions[1].height = 30
    note = (f"依据{policy.id}《{policy.title}》。无需加载项，Excel、WPS、LibreOffice 均可直接使用："
            "在黄色单元格填写，右侧“预计奖励”自动计算；留空的条款不计算。金额单位为元，美元金额为美元，比例按百分比填写。"
            f"第{policy.overlap_article}条“就高不重复”未在此扣减。结果仅供参考，以审核结果为准。"
            f"模板版本 {model.template_version}。")
    _text(ws, "A2", note, align=WRAP, font=NOTE_FONT)
    _merge(ws, "A", last_col, 2)
    fit_height(ws, 2, note, _width(widths, "A", last_col), 13)

    _text(ws, "A4", f"第{policy.disqualification_article}条 不得享受情形（适用于下列所有条款；不填视为无此情形）", font=BOLD)
    _merge(ws, "A", last_col, 4)
    for f in model.attestations:
        cell = dq_cells[f.fact or f.key]
        col = cell.rstrip("0123456789")
        label = f"{f.label}（%）" if f.type == "rate" else f.label
        _text(ws, f"{col}5", label, font=NOTE_FONT, fill=HEADER_FILL, align=CENTER, border=True)
        _input(ws, cell, f)
        sheet.validate(f, cell)
    ws.row_dimensions[5].height = 15 * 4 + 3
    disq = disqualified_formula(policy, lambda name: absolute(dq_cells[name]))

    for header_col, text in zip("ABC", ("条款", "奖励名称", "预计奖励（元）")):
        _text(ws, f"{header_col}8", text, font=BOLD, fill=HEADER_FILL, align=CENTER, border=True)
    _text(ws, "D8", "申报数据（上行为项目，下行填写）", font=BOLD, fill=HEADER_FILL, align=CENTER, border=True)
    _merge(ws, "D", last_col, 8)
    for calc in rows:
        clause = policy.clauses[calc.clause]
        label_row = int(calc.award_cell[1:]) - 1
        _text(ws, f"A{label_row}", clause.cite, align=CENTER, border=True, font=BOLD)
        _text(ws, f"B{label_row}", clause.title, align=WRAP, border=True)
        _text(ws, f"C{label_row}", "预计奖励（元）", font=NOTE_FONT, align=CENTER, border=True)
        ws.row_dimensions[label_row].height = 30  # two lines of label
        for name, spec in clause.facts.items():
            if spec.type == "items":
                continue
            f = fact_field(spec, sheet=CALC_SHEET, cell=calc.cells[name], pointer=name)
            col = f.cell.rstrip("0123456789")
            unit = _unit_text(f)
            _text(ws, f"{col}{label_row}", f"{f.label}（{unit}）" if unit else f.label, font=NOTE_FONT,
                  fill=HEADER_FILL, align=CENTER, border=True)
            _input(ws, f.cell, f)
            sheet.validate(f, f.cell)
        items_total = None
        if calc.items:
            items_fact = next(n for n, s in clause.facts.items() if s.type == "items")
            spec = clause.facts[items_fact]
            item_fields = {k: fact_field(s, sheet=CALC_SHEET, cell="", pointer=k) for k, s in spec.items.items()}
            value_row = label_row + 1 + len(spec.items)
            values = []
            for i in range(calc.items):
                first = calc.cells[f"{items_fact}[{i}].{next(iter(spec.items))}"]
                col = first.rstrip("0123456789")
                _text(ws, f"{col}{label_row}", f"第{i + 1}项", font=NOTE_FONT, fill=HEADER_FILL, align=CENTER,
                      border=True)
                for k, f in item_fields.items():
                    cell = calc.cells[f"{items_fact}[{i}].{k}"]
                    _input(ws, cell, f)
                    sheet.validate(f, cell)
                formula = item_formula(clause, items_fact, lambda k, i=i: absolute(calc.cells[f"{items_fact}[{i}].{k}"]))
                _computed(ws, f"{col}{value_row}", "=" + formula)
                values.append(f"{col}{value_row}")
            for j, (k, f) in enumerate(item_fields.items()):
                row = label_row + 1 + j
                unit = _unit_text(f)
                _text(ws, f"B{row}", f"{f.label}（{unit}）" if unit else f.label, font=NOTE_FONT, align=WRAP,
                      border=True)
            _text(ws, f"B{value_row}", "本项预计补助（自动计算）", font=NOTE_FONT, align=WRAP, border=True)
            total = f"SUM(${values[0][0]}${value_row}:${values[-1][0]}${value_row})"
            items_total = lambda _items, total=total: total  # noqa: E731
        formula = f"IF({disq},0,{award_formula(clause, lambda fact: absolute(calc.cells[fact]), items_total)[1:]})"
        if calc.items:
            # A detail row with nothing typed in it shows a blank award, like the other rows.
            first_item = next(iter(spec.items))
            cells = [calc.cells[f"{items_fact}[{i}].{first_item}"] for i in range(calc.items)]
            formula = f'IF(COUNTA({absolute(cells[0])}:{absolute(cells[-1])})=0,"",{formula})'
        _put(ws, calc.award_cell, "=" + formula, font=ESTIMATE_FONT, fill=ESTIMATE_FILL, border=True,
             fmt="#,##0.00")
        _name(ws, f"award_{calc.clause.replace('.', '_')}", absolute(calc.award_cell))
    last_row = max(int(c.award_cell[1:]) for c in rows) + 3
    _put(ws, "A6", f'=IF({disq},"⚠ 存在不得享受情形","")', font=WARN_FONT, align=WRAP)
    _merge(ws, "A", "C", 6)
    sheet.finish()
    page_setup(ws, last_col, last_row, landscape=True)
    _protect(ws)
    _write_lists(wb, list_values)
    _write_meta(wb, model, CALCULATOR, ())
    _finish_workbook(wb, model, "兰溪市电子商务奖励计算器（公式版）")
    return wb


# --- deterministic saving ------------------------------------------------------------

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def workbook_bytes(wb: Workbook) -> bytes:
    """The workbook as xlsx bytes that depend only on its content (fixed zip timestamps)."""
    raw = io.BytesIO()
    wb.save(raw)
    src = zipfile.ZipFile(io.BytesIO(raw.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=ZIP_EPOCH)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o600 << 16
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                # openpyxl stamps "modified" with the time of saving; use the creation date.
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)",
                              lambda m: m.group(1) + _created(data) + m.group(2), data)
            dst.writestr(entry, data)
    return out.getvalue()


def _created(core: bytes) -> bytes:
    found = re.search(rb"<dcterms:created[^>]*>([^<]*)</dcterms:created>", core)
    return found.group(1) if found else b"2000-01-01T00:00:00Z"


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file next to ``path`` and rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a generated file is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def template_name(target: str) -> str:
    return "declaration.xlsx" if target == "all" else f"art-{target}.xlsx"


def generated_files(model: FormModel | None = None) -> dict[str, bytes]:
    """Every generated file by its path relative to the repository root."""
    model = model or load_model()
    files: dict[str, bytes] = {}
    base = Path("schemas") / schema_dir(model)
    for name, schema in build_schemas(model).items():
        files[(base / name).as_posix()] = schema_text(schema).encode("utf-8")
    files["templates/declaration.xlsx"] = workbook_bytes(build_workbook(model, "all"))
    for key in model.articles:
        files[f"templates/{template_name(key)}"] = workbook_bytes(build_workbook(model, key))
    files["templates/calculator.xlsx"] = workbook_bytes(build_calculator(model))
    return files


def generate(out: str | Path = ".", model: FormModel | None = None) -> list[Path]:
    """Write ``schemas/`` and ``templates/`` under ``out``; returns the paths written."""
    root = Path(out)
    written = []
    for rel, data in generated_files(model).items():
        path = root / rel
        write_atomic(path, data)
        written.append(path)
    return written


# --- filling a template from JSON ----------------------------------------------------


_TEMPLATE_CACHE: dict[tuple[int, str], tuple[FormModel, bytes]] = {}


def _template_bytes(model: FormModel, target: str) -> bytes:
    """The generated template (cached: filling many declarations builds it once)."""
    key = (id(model), target)
    hit = _TEMPLATE_CACHE.get(key)
    if hit is None or hit[0] is not model:
        hit = (model, workbook_bytes(build_workbook(model, target)))
        _TEMPLATE_CACHE[key] = hit
    return hit[1]


def fill_workbook(model: FormModel, target: str, instance: Mapping[str, Any]) -> Workbook:
    """The target's template with the (already valid) instance written into its cells."""
    wb = load_workbook(io.BytesIO(_template_bytes(model, target)))
    cover = wb[model.cover_sheet]
    common = instance.get("common") or {}
    for f in model.common:
        _fill_cell(cover, f.cell, f, common.get(f.key))
    answers = common.get("attestations") or {}
    for f in model.attestations:
        _fill_cell(cover, f.cell, f, answers.get(f.key))
    for key, data in (instance.get("articles") or {}).items():
        art = model.article(key)
        ws = wb[art.sheet]
        for f in art.fields:
            _fill_cell(ws, f.cell, f, data.get(f.key))
        for t in art.tables:
            for i, row in enumerate(data.get(t.key) or ()):
                for c in t.columns:
                    _fill_cell(ws, t.cell(i, c.key), c, row.get(c.key))
    return wb


def _fill_cell(ws: Worksheet, ref: str, f: Field, value: Any) -> None:
    if value is None:
        return
    cell = ws[ref]
    cell.value = json_to_cell(f, value)
    if isinstance(cell.value, str):
        cell.data_type = "s"  # "=…" from the data is text, never a formula


def fill(target: str, instance: Mapping[str, Any], out: str | Path, model: FormModel | None = None) -> Path:
    """Validate ``instance`` against the target's schema, then write the filled workbook.

    Nothing is written when the instance is invalid (``INSTANCE_INVALID`` lists every
    schema error); the file appears only complete (temporary file, then rename).
    """
    model = model or load_model(instance.get("policy") if isinstance(instance, Mapping) else None)
    target = str(target).strip()
    if target.lower() in ("all", "declaration"):
        target = "all"
    else:
        model.article(target)
    check_instance(model, target, instance)
    path = Path(out)
    write_atomic(path, workbook_bytes(fill_workbook(model, target, instance)))
    return path


def load_json(path: str | Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("UNREADABLE_JSON", f"无法读取 {path}：{exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError("BAD_JSON", f"{Path(path).name} 不是有效的 JSON：第{exc.lineno}行第{exc.colno}列 {exc.msg}") from None
