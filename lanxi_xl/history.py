"""History import: awards paid before the system, so the cross-year rules count them.

The bureau's own list (.xlsx or .csv) with Chinese headers, in any column order:

    统一社会信用代码 | 企业名称 | 年度 | 条款 | 金额 | 称号/级别 (第2、13条必填) | 备注 (可选)

All or nothing: if any row is wrong, nothing is imported and every wrong row is named
with its row number. Importing the same file again adds nothing; a row already imported
from another file (same enterprise, year, clause, title and amount) is skipped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError
from .facts import choice_key, is_blank
from .money import FEN, to_decimal
from .policy import parse_year, policy_for_year
from .registry import HistoryRow, normalize_credit_code, open_registry

REQUIRED = {"统一社会信用代码": "credit_code", "企业名称": "enterprise", "年度": "year", "条款": "clause", "金额": "amount"}
OPTIONAL = {"称号/级别": "choice", "称号": "choice", "级别": "choice", "备注": "note"}
MAX_ERRORS_SHOWN = 50


@dataclass(frozen=True)
class HistoryImport:
    file_name: str
    rows_read: int
    rows_added: int  # new rows (the others were imported before)
    already_imported: bool  # this very file was imported before: nothing done
    years_redecided: tuple[int, ...]


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def read_table(path: Path) -> list[tuple[int, list[object]]]:
    """The rows of the first sheet (or the CSV) as (row number, values)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        raw = path.read_bytes()
        try:
            content = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            # Excel on Chinese Windows saves "CSV" in GBK/GB18030.
            try:
                content = raw.decode("gb18030")
            except UnicodeDecodeError:
                raise InputError("HISTORY_ENCODING", f"{path.name} 不是 UTF-8 或 GBK 编码的 CSV 文件") from None
        rows = list(csv.reader(io.StringIO(content)))
        return [(n, list(r)) for n, r in enumerate(rows, start=1)]
    if suffix in (".xlsx", ".xlsm"):
        # The same safe path as returned declarations: screened first, read by calamine.
        import python_calamine

        from .screen import screen

        screened = screen(path)
        if not screened.readable:
            raise InputError("HISTORY_UNREADABLE", f"无法读取 {path.name}：{screened.problems[0].message}")
        try:
            sheet = python_calamine.CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0)
            grid = sheet.to_python(skip_empty_area=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable workbook is the same problem to a person
            raise InputError("HISTORY_UNREADABLE", f"无法读取 {path.name}：不是有效的 Excel 工作簿（{type(exc).__name__}）") from None
        # calamine gives every number as float: 2023.0 is the year 2023, 8.0 is 第8条.
        return [
            (n, [int(v) if isinstance(v, float) and v.is_integer() else (None if v == "" else v) for v in row])
            for n, row in enumerate(grid, start=1)
        ]
    raise InputError("HISTORY_FILE_TYPE", f"历史数据应为 .xlsx 或 .csv 文件，收到“{path.name}”")


# White space is taken out first: with ``\s*`` on both sides of optional parts, a cell of
# "1" and a few thousand spaces took the expression seconds (cubic backtracking).
_CLAUSE_RE = re.compile(r"第?(\d{1,3})条?(?:第?(\d{1,3})款)?")
_SUBCLAUSE_RE = re.compile(r"(\d{1,3})\.(\d{1,3})")


def parse_clause(raw: object, clause_ids: Sequence[str]) -> str:
    text = _cell_text(raw).replace("．", ".")
    if text in clause_ids:
        return text
    compact = "".join(text.split())
    m = _CLAUSE_RE.fullmatch(compact) or _SUBCLAUSE_RE.fullmatch(compact)
    if m:
        cid = m.group(1) if not m.group(2) else f"{m.group(1)}.{m.group(2)}"
        if cid in clause_ids:
            return cid
        subs = [c for c in clause_ids if c.startswith(f"{m.group(1)}.")]
        if subs and not m.group(2):
            listed = "、".join(subs)
            raise InputError("HISTORY_CLAUSE_AMBIGUOUS", f"第{m.group(1)}条分为多款，请写明条款编号（{listed}）")
    raise InputError("HISTORY_CLAUSE", f"条款“{text}”不存在，可用的条款：{'、'.join(clause_ids)}")


def parse_rows(path: Path, table: list[tuple[int, list[object]]]) -> list[HistoryRow]:
    """Every data row checked; one InputError listing every wrong row if any is wrong."""
    header_at = next((i for i, (_, vals) in enumerate(table) if any(not is_blank(v) for v in vals)), None)
    if header_at is None:
        raise InputError("HISTORY_EMPTY", f"{path.name} 是空的")
    header_no, header = table[header_at]
    columns: dict[str, int] = {}
    for i, name in enumerate(header):
        key = _cell_text(name)
        field = REQUIRED.get(key) or OPTIONAL.get(key)
        if field and field not in columns:
            columns[field] = i
    missing = [zh for zh, f in REQUIRED.items() if f not in columns]
    if missing:
        raise InputError(
            "HISTORY_HEADER",
            f"{path.name} 第{header_no}行（表头）缺少列：{'、'.join(missing)}；"
            f"需要的列：{'、'.join(REQUIRED)}，可选：称号/级别、备注",
        )

    errors: list[str] = []
    rows: list[HistoryRow] = []
    seen: dict[tuple[Any, ...], int] = {}
    for row_no, values in table[header_at + 1:]:
        if all(is_blank(v) for v in values):
            continue
        cell = {f: (values[i] if i < len(values) else None) for f, i in columns.items()}
        try:
            row = _parse_row(row_no, cell)
        except InputError as exc:
            errors.append(f"第{row_no}行：{exc.message}")
            continue
        key = (row.credit_code, row.year, row.clause_id, row.choice, row.amount)
        if key in seen:
            errors.append(f"第{row_no}行：与第{seen[key]}行重复（同一企业、年度、条款、金额）；如确为两笔，请合并为一行")
            continue
        seen[key] = row_no
        rows.append(row)
    if errors:
        shown = errors[:MAX_ERRORS_SHOWN]
        more = f"\n……另有{len(errors) - len(shown)}处" if len(errors) > len(shown) else ""
        raise InputError(
            "HISTORY_ROWS_INVALID",
            f"{path.name} 有{len(errors)}处错误，未导入任何记录：\n" + "\n".join(shown) + more,
            errors=len(errors),
        )
    if not rows:
        raise InputError("HISTORY_EMPTY", f"{path.name} 只有表头，没有数据行")
    return rows


def _parse_row(row_no: int, cell: Mapping[str, object]) -> HistoryRow:
    code = normalize_credit_code(cell.get("credit_code"))
    name = _cell_text(cell.get("enterprise"))
    if not name:
        raise InputError("HISTORY_NAME", "缺少企业名称")
    year = parse_year(cell.get("year"))
    policy = policy_for_year(year)
    clause_id = parse_clause(cell.get("clause"), tuple(policy.clauses))
    clause = policy.clauses[clause_id]
    raw_amount = cell.get("amount")
    amount = to_decimal(raw_amount.strip() if isinstance(raw_amount, str) else raw_amount)
    if amount is None or amount <= 0:
        raise InputError("HISTORY_AMOUNT", f"金额应为大于0的数字（元，不写千位分隔符），收到“{_cell_text(raw_amount)}”")
    if amount != amount.quantize(FEN):
        raise InputError("HISTORY_AMOUNT", f"金额最多两位小数（精确到分），收到“{_cell_text(raw_amount)}”")
    choice_raw = cell.get("choice")
    choice = None
    if clause.payable.kind == "once_per_choice" and clause.payable.fact:
        spec = clause.facts[clause.payable.fact]
        if is_blank(choice_raw):
            options = "、".join(c.label for c in spec.choices)
            raise InputError("HISTORY_CHOICE", f"{clause.cite}须填写称号/级别（{options}）")
        choice = choice_key(spec, choice_raw)
        if choice is None:
            options = "、".join(c.label for c in spec.choices)
            raise InputError("HISTORY_CHOICE", f"{clause.cite}的称号/级别应为{options}之一，收到“{_cell_text(choice_raw)}”")
    elif not is_blank(choice_raw):
        raise InputError("HISTORY_CHOICE", f"{clause.cite}不分称号/级别，该列请留空，收到“{_cell_text(choice_raw)}”")
    return HistoryRow(code, name, year, clause_id, choice, amount.quantize(FEN), _cell_text(cell.get("note")), row_no)


def import_history(path: str | Path, db_path: str | Path | None = None) -> HistoryImport:
    """Load a history file into the registry (all rows or none), then decide again every
    year already decided from the earliest imported year on, so they count the history."""
    from .review import redecide  # the decision rules, imported where needed

    src = Path(path)
    if not src.is_file():
        raise InputError("HISTORY_NOT_FOUND", f"找不到历史数据文件 {src}")
    data = src.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    table = read_table(src)
    rows = parse_rows(src, table)
    with open_registry(db_path) as reg:
        before = reg.history_import(sha)
        if before is not None:
            return HistoryImport(src.name, len(rows), 0, True, ())
        first = min(r.year for r in rows)
        with reg.transaction() as db:
            added = reg.add_history(db, sha, src.name, rows)
            later = [y for y in reg.decided_years() if y >= first]
            decided: tuple[int, ...] = ()
            if later:
                decided, _ = redecide(reg, db, later[0])
    return HistoryImport(src.name, len(rows), added, False, decided)
