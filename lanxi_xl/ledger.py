"""The ledger workbook (台账): one row per award candidate, totals, and a summary chart.

Text that came from returned files (enterprise names, file names, declared values,
error messages) is written as typed strings, never as formulas: a name typed as
``=HYPERLINK(…)`` shows as that text and is not evaluated (see docs/xlsx-findings.md §6).
Totals are written as values computed here, so the file reads the same in any program,
with or without recalculation.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.chart import BarChart, Reference
from openpyxl.packaging.custom import CustomPropertyList, StringProperty
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from .errors import LanxiError
from .forms import LEDGER_STAMP
from .review import LedgerData

MONEY_FORMAT = "#,##0.00"
MAX_CELL_TEXT = 32767  # Excel's limit for one cell
HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
HEADER_FONT = Font(bold=True)
UNPAID_FONT = Font(color="9C0006")

SHEET_SUMMARY = "汇总"
SHEET_ROWS = "台账"
SHEET_ENTERPRISES = "企业合计"
SHEET_ARTICLES = "条款合计"
SHEET_FILES = "申报文件"

ROW_HEADERS = (
    ("年度", 8), ("统一社会信用代码", 22), ("企业名称", 28), ("条款", 14), ("条款编号", 9), ("奖励项目", 22),
    ("申报文件", 26), ("申报数据", 50), ("计算金额（元）", 15), ("核定金额（元）", 15), ("起作用的上限", 24),
    ("是否发放", 9), ("核定结果", 22), ("原因", 70), ("政策", 16),
)


def text(value: object) -> str:
    """A cell-safe string: no control characters openpyxl would refuse, within Excel's limit."""
    s = ILLEGAL_CHARACTERS_RE.sub("\ufffd", "" if value is None else str(value))
    return s if len(s) <= MAX_CELL_TEXT else s[: MAX_CELL_TEXT - 1] + "…"


def put_text(ws: Worksheet, row: int, col: int, value: object) -> Cell:
    """Write ``value`` as a plain string, whatever it starts with (=, +, -, @)."""
    cell = ws.cell(row=row, column=col)
    cell.value = text(value)
    # openpyxl turns a str starting with "=" into a formula; force a shared string, and
    # set quotePrefix so that Excel keeps it text even when the cell is edited.
    cell.data_type = "s"
    if cell.value[:1] in ("=", "+", "-", "@"):
        cell.quotePrefix = True
    return cell


def put_money(ws: Worksheet, row: int, col: int, value: Decimal) -> Cell:
    cell = ws.cell(row=row, column=col, value=value)
    cell.number_format = MONEY_FORMAT
    return cell


def put_number(ws: Worksheet, row: int, col: int, value: int) -> Cell:
    return ws.cell(row=row, column=col, value=value)


def _header(ws: Worksheet, row: int, headers: Sequence[tuple[str, int]]) -> None:
    for col, (name, width) in enumerate(headers, start=1):
        cell = put_text(ws, row, col, name)
        cell.font, cell.fill = HEADER_FONT, HEADER_FILL
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        ws.column_dimensions[get_column_letter(col)].width = width


def _table(ws: Worksheet, headers: Sequence[tuple[str, int]], rows: Sequence[Sequence[Any]], first_row: int = 1) -> int:
    """Headers, rows (str → text, Decimal → money, int → number), filter and frozen header.
    Returns the last row written."""
    _header(ws, first_row, headers)
    r = first_row
    for r, values in enumerate(rows, start=first_row + 1):
        for col, value in enumerate(values, start=1):
            if isinstance(value, Decimal):
                put_money(ws, r, col, value)
            elif isinstance(value, int) and not isinstance(value, bool):
                put_number(ws, r, col, value)
            else:
                put_text(ws, r, col, value)
    last_col = get_column_letter(len(headers))
    ws.auto_filter.ref = f"A{first_row}:{last_col}{max(r, first_row)}"
    ws.freeze_panes = ws.cell(row=first_row + 1, column=1)
    return r


def build_ledger(data: LedgerData) -> Workbook:
    wb = Workbook()
    summary = wb.active
    summary.title = SHEET_SUMMARY
    _rows_sheet(wb.create_sheet(SHEET_ROWS), data)
    _enterprises_sheet(wb.create_sheet(SHEET_ENTERPRISES), data)
    articles = wb.create_sheet(SHEET_ARTICLES)
    last = _articles_sheet(articles, data)
    _files_sheet(wb.create_sheet(SHEET_FILES), data)
    _summary_sheet(summary, data, articles, last)
    # Marked as ours and as a ledger: written into a folder under review, it is listed as
    # "not a declaration" next time instead of being recorded as a bad one.
    props = CustomPropertyList()
    for key, value in LEDGER_STAMP.items():
        props.append(StringProperty(name=f"lanxi.{key}", value=value))
    wb.custom_doc_props = props
    return wb


def _rows_sheet(ws: Worksheet, data: LedgerData) -> None:
    rows = [
        (r.year, r.credit_code, r.enterprise, r.cite, r.clause_id, r.title, r.file_name, r.declared, r.computed,
         r.amount, r.binding_cap, "是" if r.paid else "否", r.outcome, r.reason, r.policy_id)
        for r in data.rows
    ]
    last = _table(ws, ROW_HEADERS, rows)
    wrap = Alignment(wrap_text=True, vertical="top")
    for n, r in enumerate(data.rows, start=2):
        for col in (8, 14):
            ws.cell(row=n, column=col).alignment = wrap
        if not r.paid:
            ws.cell(row=n, column=12).font = UNPAID_FONT
    # A totals line under the filtered range: what is paid in all.
    total_row = last + 2
    put_text(ws, total_row, 9, "发放合计").font = HEADER_FONT
    put_money(ws, total_row, 10, data.total).font = HEADER_FONT


TOTAL_HEADERS = (("申报项数", 10), ("发放项数", 10), ("发放金额（元）", 16))


def _totals_sheet(ws: Worksheet, keys: tuple[tuple[str, int], tuple[str, int]], groups: list[Any],
                  key: Any) -> int:
    """One row per group (two key columns, then candidates, paid, amount) and a 合计 line."""
    last = _table(ws, (*keys, *TOTAL_HEADERS), [(*key(g), g.candidates, g.paid, g.amount) for g in groups])
    put_text(ws, last + 2, 2, "合计").font = HEADER_FONT
    put_number(ws, last + 2, 3, sum(g.candidates for g in groups))
    put_number(ws, last + 2, 4, sum(g.paid for g in groups))
    put_money(ws, last + 2, 5, sum((g.amount for g in groups), Decimal(0))).font = HEADER_FONT
    return last


def _enterprises_sheet(ws: Worksheet, data: LedgerData) -> None:
    _totals_sheet(ws, (("统一社会信用代码", 22), ("企业名称", 30)), list(data.enterprises),
                  lambda e: (e.credit_code, e.enterprise))


def _articles_sheet(ws: Worksheet, data: LedgerData) -> int:
    return _totals_sheet(ws, (("条款", 10), ("奖励项目", 40)), list(data.articles), lambda a: (a.cite, a.title))


def _files_sheet(ws: Worksheet, data: LedgerData) -> None:
    headers = (("申报文件", 30), ("文件SHA-256", 20), ("申报表模板", 14), ("统一社会信用代码", 22), ("企业名称", 28),
               ("年度", 8), ("校验结果", 10), ("问题", 80))
    rows = []
    for d in data.declarations:
        problems = "；".join(
            f"{e.get('message', '')}" + (f"（{e['cell']}）" if e.get("cell") else "") for e in d.errors
        )
        rows.append((d.file_name, d.sha256[:16], d.template or "", d.credit_code or "", d.enterprise or "",
                     d.year if d.year is not None else "", "通过" if d.valid else "未通过", problems))
    _table(ws, headers, rows)
    for n in range(2, len(rows) + 2):
        ws.cell(row=n, column=8).alignment = Alignment(wrap_text=True, vertical="top")


def _summary_sheet(ws: Worksheet, data: LedgerData, articles: Worksheet, last: int) -> None:
    ws.column_dimensions["A"].width = 22
    ws.column_dimensions["B"].width = 60
    put_text(ws, 1, 1, f"{data.year}年度电子商务奖励审核台账").font = Font(bold=True, size=14)
    lines: list[tuple[str, object]] = [
        ("政策", f"{data.policy_id}《{data.policy_title}》"),
        ("年度", data.year),
        ("申报文件数", len(data.declarations)),
        ("其中未通过校验", sum(not d.valid for d in data.declarations)),
        ("申报企业数", len(data.enterprises)),
        ("申报项数（奖励候选）", len(data.rows)),
        ("发放项数", sum(r.paid for r in data.rows)),
        ("发放总额（元）", data.total),
    ]
    for n, (label, value) in enumerate(lines, start=3):
        put_text(ws, n, 1, label).font = HEADER_FONT
        if isinstance(value, Decimal):
            put_money(ws, n, 2, value).alignment = Alignment(horizontal="left")
        elif isinstance(value, int):
            put_number(ws, n, 2, value).alignment = Alignment(horizontal="left")
        else:
            put_text(ws, n, 2, value).alignment = Alignment(wrap_text=True)
    put_text(ws, len(lines) + 4, 1, f"明细见“{SHEET_ROWS}”表；按企业、按条款的合计见“{SHEET_ENTERPRISES}”“{SHEET_ARTICLES}”表。")

    chart = BarChart()
    chart.type = "col"
    chart.title = "各条款发放金额（元）"
    chart.y_axis.title = "元"
    chart.x_axis.title = "条款"
    chart.legend = None
    values = Reference(articles, min_col=5, min_row=1, max_row=last)
    cats = Reference(articles, min_col=1, min_row=2, max_row=last)
    chart.add_data(values, titles_from_data=True)
    chart.set_categories(cats)
    chart.height, chart.width = 9, 18
    ws.add_chart(chart, f"A{len(lines) + 6}")


def write_ledger(data: LedgerData, path: str | Path) -> Path:
    """Write the ledger to ``path`` atomically (a half-written file never replaces a good one)."""
    target = Path(path)
    if target.suffix.lower() != ".xlsx":
        raise LanxiError("LEDGER_NOT_XLSX", f"台账文件名应以 .xlsx 结尾，收到“{target.name}”", path=str(target))
    if not target.parent.exists():
        raise LanxiError("LEDGER_DIR_MISSING", f"台账所在的文件夹 {target.parent} 不存在", path=str(target))
    wb = build_ledger(data)
    fd, tmp = tempfile.mkstemp(prefix=".ledger-", suffix=".xlsx", dir=target.parent)
    os.close(fd)
    try:
        wb.save(tmp)
        os.replace(tmp, target)
    except PermissionError:
        raise LanxiError(
            "LEDGER_LOCKED", f"无法写入台账 {target}：文件可能正在 Excel 中打开，请关闭后重试", path=str(target)
        ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
