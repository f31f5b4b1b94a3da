"""The ledger workbook: reopened with openpyxl, its totals checked, its text never a formula."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from declarations import credit_code, declare

from lanxi_xl.errors import LanxiError
from lanxi_xl.ledger import SHEET_ARTICLES, SHEET_ENTERPRISES, SHEET_FILES, SHEET_ROWS, SHEET_SUMMARY, write_ledger
from lanxi_xl.registry import open_registry
from lanxi_xl.review import ledger_data, review_folder

ROOT = Path(__file__).resolve().parents[1]
FORMULA_NAME = '=HYPERLINK("http://evil.example","点我领奖")'
FORMULA_VALUE = "=cmd|' /C calc'!A0"


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A registry with a reviewed 2023 and its ledger."""
    tmp = tmp_path_factory.mktemp("ledger")
    folder, db = tmp / "in", tmp / "reg.sqlite"
    declare(folder, "01.json", 1, 2023, [("8", {"usd_sales": 2500000}), ("6", {"sales": 12000000})])
    declare(folder, "02.json", 1, 2023, [("7", {"events": [{"cost": 40000}] * 4})])
    declare(folder, "03.json", 1, 2023, [("7", {"events": [{"cost": 40000}] * 2})])
    declare(folder, "04.json", 2, 2023, [("9", {"fees": 10000}), ("1", {"land_mu": 25, "floor_m2": 0,
                                                                       "occupancy": "85%", "sales": 60000000})],
            enterprise=FORMULA_NAME)
    declare(folder, "05.json", 3, 2023, [("2", {"level": FORMULA_VALUE})], enterprise="兰溪\x01控制字符公司")
    declare(folder, "06.json", 4, 2023, [("10", {"service_fees": 20000})], answers={"dishonest": "是"})
    declare(folder, "=1+1.json", 5, 2023, [("12", {"online_sales": 600000})],
            valid=False, errors=[{"code": "X", "message": "-2+3 填写有误", "cell": "@A1"}])
    (folder / "坏文件.json").write_text("{", encoding="utf-8")
    review_folder(folder, 2023, db)
    xlsx = tmp / "台账.xlsx"
    with open_registry(db) as reg:
        write_ledger(ledger_data(reg, 2023), xlsx)
    return db, xlsx


def test_ledger_sheets_filters_frozen_headers_and_chart(reviewed: tuple[Path, Path]) -> None:
    _, xlsx = reviewed
    wb = openpyxl.load_workbook(xlsx)
    assert wb.sheetnames == [SHEET_SUMMARY, SHEET_ROWS, SHEET_ENTERPRISES, SHEET_ARTICLES, SHEET_FILES]
    for name in (SHEET_ROWS, SHEET_ENTERPRISES, SHEET_ARTICLES, SHEET_FILES):
        ws = wb[name]
        assert ws.freeze_panes == "A2", name
        assert ws.auto_filter.ref and ws.auto_filter.ref.startswith("A1:"), name
    charts = wb[SHEET_SUMMARY]._charts
    assert len(charts) == 1 and charts[0].tagname == "barChart"
    rows = list(wb[SHEET_ROWS].iter_rows(min_row=1, max_row=1, values_only=True))[0]
    assert rows[:4] == ("年度", "统一社会信用代码", "企业名称", "条款") and "原因" in rows


def _table(ws, stop_at_blank: bool = True) -> list[dict[str, object]]:
    rows = list(ws.iter_rows(values_only=True))
    head = rows[0]
    out = []
    for r in rows[1:]:
        if stop_at_blank and all(v is None for v in r):
            break
        out.append(dict(zip(head, r)))
    return out


def test_ledger_totals_add_up(reviewed: tuple[Path, Path]) -> None:
    _, xlsx = reviewed
    wb = openpyxl.load_workbook(xlsx)
    rows = _table(wb[SHEET_ROWS])
    assert len(rows) == 9  # one row per award candidate (the broken file has none)
    paid = [r for r in rows if r["是否发放"] == "是"]
    total = sum(Decimal(str(r["核定金额（元）"])) for r in paid)
    assert all(r["核定金额（元）"] == 0 for r in rows if r["是否发放"] == "否")
    # 8 → 200,000; 6 overlaps; 7 → 80,000 + 20,000; 9 → 7,000; 1 → 300,000; the rest nothing.
    assert total == Decimal("607000")

    per_ent: dict[str, Decimal] = defaultdict(Decimal)
    per_art: dict[str, Decimal] = defaultdict(Decimal)
    for r in paid:
        per_ent[r["统一社会信用代码"]] += Decimal(str(r["核定金额（元）"]))
        per_art[r["条款"].split("第")[1].split("条")[0]] += Decimal(str(r["核定金额（元）"]))
    ent = _table(wb[SHEET_ENTERPRISES])
    assert {e["统一社会信用代码"]: Decimal(str(e["发放金额（元）"])) for e in ent} == {
        **{credit_code(n): Decimal(0) for n in (1, 2, 3, 4, 5)}, **per_ent}
    art = _table(wb[SHEET_ARTICLES])
    assert [a["条款"] for a in art] == [f"第{n}条" for n in range(1, 14)]
    assert {a["条款"]: Decimal(str(a["发放金额（元）"])) for a in art if a["发放金额（元）"]} == {
        f"第{k}条": v for k, v in per_art.items()}
    # The totals lines under the tables and the summary agree.
    for name, col in ((SHEET_ENTERPRISES, 5), (SHEET_ARTICLES, 5)):
        ws = wb[name]
        last = ws.max_row
        assert ws.cell(last, 2).value == "合计" and Decimal(str(ws.cell(last, col).value)) == total
    ws = wb[SHEET_ROWS]
    assert ws.cell(ws.max_row, 9).value == "发放合计" and Decimal(str(ws.cell(ws.max_row, 10).value)) == total
    summary = {r[0]: r[1] for r in wb[SHEET_SUMMARY].iter_rows(values_only=True) if r[0]}
    assert Decimal(str(summary["发放总额（元）"])) == total
    assert summary["申报文件数"] == 8 and summary["其中未通过校验"] == 2 and summary["申报项数（奖励候选）"] == 9
    assert wb[SHEET_ROWS]["J2"].number_format == "#,##0.00"


def test_text_from_returned_files_is_text_never_a_formula(reviewed: tuple[Path, Path]) -> None:
    _, xlsx = reviewed
    wb = openpyxl.load_workbook(xlsx)
    texts = []
    for ws in wb:
        for row in ws.iter_rows():
            for cell in row:
                if isinstance(cell.value, str):
                    assert cell.data_type == "s", (ws.title, cell.coordinate, cell.value)
                    texts.append(cell.value)
    assert FORMULA_NAME in texts and "=1+1.json" in texts
    assert any(FORMULA_VALUE in t for t in texts)  # the bad choice is quoted in the reason
    assert any("-2+3 填写有误" in t for t in texts) and "兰溪\ufffd控制字符公司" in texts
    # No cell formula anywhere in the file, whatever a reader makes of it.
    with zipfile.ZipFile(xlsx) as z:
        for name in z.namelist():
            if name.startswith("xl/worksheets/sheet"):
                assert b"<f>" not in z.read(name) and b"<f " not in z.read(name), name


def test_formula_text_survives_libreoffice_recalculation(reviewed: tuple[Path, Path], lo_recalc) -> None:
    _, xlsx = reviewed
    out = lo_recalc({"ledger": xlsx})["ledger"]
    ws = openpyxl.load_workbook(out)[SHEET_ENTERPRISES]
    names = [c.value for c in ws["B"]]
    assert FORMULA_NAME in names


def test_ledger_is_the_same_when_written_again_and_by_the_ledger_command(reviewed: tuple[Path, Path],
                                                                         tmp_path: Path) -> None:
    db, xlsx = reviewed

    def values(path: Path) -> dict[str, list[tuple[object, ...]]]:
        return {ws.title: [tuple(r) for r in ws.iter_rows(values_only=True)] for ws in openpyxl.load_workbook(path)}

    out = subprocess.run(
        [sys.executable, "-m", "lanxi_xl.cli", "ledger", "--year", "2023", "--db", str(db), "-o", str(tmp_path / "again.xlsx")],
        capture_output=True, text=True, encoding="utf-8", timeout=60, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert values(tmp_path / "again.xlsx") == values(xlsx)


def test_ledger_rows_show_declared_figures_and_reasons(reviewed: tuple[Path, Path]) -> None:
    _, xlsx = reviewed
    rows = {(r["申报文件"], r["条款编号"]): r for r in _table(openpyxl.load_workbook(xlsx)[SHEET_ROWS])}
    cross = rows[("01.json", "8")]
    assert cross["申报数据"] == "「第三方平台跨境B2C销售额」2,500,000.00美元" and cross["是否发放"] == "是"
    live = rows[("01.json", "6")]
    assert live["核定结果"] == "不发放：就高不重复" and "第14条" in live["原因"] and live["计算金额（元）"] == 100000
    reduced = rows[("03.json", "7")]
    assert reduced["起作用的上限"] == "每家机构每年上限（本年度累计）" and reduced["核定金额（元）"] == 20000
    dq = rows[("06.json", "10")]
    assert dq["是否发放"] == "否" and "被列为失信企业" in dq["原因"] and "「被列为失信企业」是" in dq["申报数据"]
    invalid = rows[("=1+1.json", "12")]
    assert invalid["核定结果"] == "不发放：申报表未通过校验"


def test_ledger_path_must_be_xlsx_in_an_existing_folder(reviewed: tuple[Path, Path], tmp_path: Path) -> None:
    db, _ = reviewed
    with open_registry(db) as reg:
        data = ledger_data(reg, 2023)
    with pytest.raises(LanxiError) as info:
        write_ledger(data, tmp_path / "台账.csv")
    assert info.value.code == "LEDGER_NOT_XLSX"
    with pytest.raises(LanxiError) as info:
        write_ledger(data, tmp_path / "nowhere" / "台账.xlsx")
    assert info.value.code == "LEDGER_DIR_MISSING"
    assert not list(tmp_path.glob(".ledger-*"))
