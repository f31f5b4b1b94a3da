"""Real LibreOffice tests for lanxi_xl.office.

The workbooks are built with openpyxl (formulas without cached values, as the
template generator writes them), recalculated in LibreOffice headless, read
back with openpyxl ``data_only=True`` and python-calamine, and compared with a
small Python reference computation that follows Excel semantics.

Each module-scoped fixture runs soffice once for all its workbooks.
"""

from __future__ import annotations

import datetime
import io
import subprocess
import sys
import tempfile
import zipfile
from decimal import ROUND_HALF_UP, Decimal

import openpyxl
import pytest
from openpyxl.packaging.custom import (
    CustomPropertyList,
    IntProperty,
    StringProperty,
)
from openpyxl.styles import Protection
from openpyxl.workbook.defined_name import DefinedName
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.properties import PageSetupProperties
from python_calamine import CalamineWorkbook

from lanxi_xl import office
from lanxi_xl.office import OfficeError, lo_cached_number

libreoffice = pytest.mark.libreoffice  # needs soffice; skipped with an install hint otherwise

# --------------------------------------------------------------------------
# Python reference (Excel semantics)
# --------------------------------------------------------------------------


def excel_round(x: float, digits: int) -> float:
    """Excel/LibreOffice ROUND: half away from zero on the *decimal* value.

    Python's round() is banker's rounding on the binary value and differs
    (round(0.285, 2) == 0.28, round(-2.5) == -2).
    """
    q = Decimal(1).scaleb(-digits)
    return float(Decimal(repr(x)).quantize(q, rounding=ROUND_HALF_UP))


INPUTS = {"B2": 1234.565, "B3": 300, "B4": 25, "B5": -50.5, "B7": 0.285}
TAX_MAIN = 0.15  # 参数!B1, sheet-scoped name 税率 on 申报表
TAX_ANNEX = 0.25  # 附表!B1, sheet-scoped name 税率 on 附表


def expected_main() -> dict[str, object]:
    b2, b3, b4, b5, b7 = (INPUTS[k] for k in ("B2", "B3", "B4", "B5", "B7"))
    c3 = excel_round(b3 / b2 * 100, 2)
    return {
        "C2": b2 + b3,
        "C3": c3,
        "C4": "符合" if (b4 >= 10 and c3 >= 5) else "不符合",
        "C5": max(b5, 0),
        "C6": min(b4, 100),
        "C7": (b4 < 10) or (b5 < 0),
        "C8": excel_round(b7, 2),
        "C9": excel_round(-2.5, 0),
        "C10": TAX_MAIN * b3,
        "C11": 7 * 2,
        "C12": 1 / 3,
        "C13": "=SUM(B2:B3)",  # a typed string, never evaluated
        "C14": 0,  # IF(B6="",0,B6) with B6 empty
        "C15": max(b2, b3, b4) - min(b2, b3, b4),
        "C16": (b4 > 0) and (b5 > 0),
    }


def build_formulas() -> openpyxl.Workbook:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "申报表"
    params = wb.create_sheet("参数")
    params.sheet_state = "hidden"
    annex = wb.create_sheet("附表")

    for ref, value in INPUTS.items():
        ws[ref] = value
    params["B1"] = TAX_MAIN
    params["B2"] = 7
    annex["B1"] = TAX_ANNEX

    # The same name, scoped to two different sheets.
    ws.defined_names["税率"] = DefinedName("税率", attr_text="'参数'!$B$1")
    annex.defined_names["税率"] = DefinedName("税率", attr_text="'附表'!$B$1")

    ws["C2"] = "=SUM(B2:B3)"
    ws["C3"] = "=ROUND(B3/B2*100,2)"
    ws["C4"] = '=IF(AND(B4>=10,C3>=5),"符合","不符合")'
    ws["C5"] = "=MAX(B5,0)"
    ws["C6"] = "=MIN(B4,100)"
    ws["C7"] = "=OR(B4<10,B5<0)"
    ws["C8"] = "=ROUND(B7,2)"
    ws["C9"] = "=ROUND(-2.5,0)"
    ws["C10"] = "=税率*B3"
    ws["C11"] = "=参数!B2*2"
    ws["C12"] = "=1/3"
    ws["C13"] = "=SUM(B2:B3)"
    ws["C13"].data_type = "s"  # text that merely looks like a formula
    ws["C14"] = '=IF(B6="",0,B6)'
    ws["C15"] = "=MAX(B2:B4)-MIN(B2:B4)"
    ws["C16"] = "=AND(B4>0,B5>0)"

    annex["A1"] = "=税率*100"
    annex["A2"] = "=申报表!C2+1"
    return wb


def build_stale() -> bytes:
    """An xlsx whose cached values are WRONG and that lacks fullCalcOnLoad.

    LibreOffice's default ("never recalculate") would keep 999; recalculate()
    must not.
    """
    wb = openpyxl.Workbook()
    ws = wb.active
    ws["A1"] = 2
    ws["A2"] = 3
    ws["A3"] = "=A1*A2"
    ws["A4"] = "=A3+1"
    buf = io.BytesIO()
    wb.save(buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"<f>A1*A2</f><v />", b"<f>A1*A2</f><v>999</v>")
                data = data.replace(b"<f>A3+1</f><v />", b"<f>A3+1</f><v>999</v>")
                assert data.count(b"<v>999</v>") == 2
            if info.filename == "xl/workbook.xml":
                data = data.replace(b' fullCalcOnLoad="1"', b"")
            dst.writestr(info, data)
    return out.getvalue()


@pytest.fixture(scope="module")
def recalculated(lo_recalc, tmp_path_factory):
    stale = tmp_path_factory.mktemp("stale") / "stale.xlsx"
    stale.write_bytes(build_stale())
    return lo_recalc({"formulas": build_formulas(), "stale": stale})


# --------------------------------------------------------------------------
# recalculation
# --------------------------------------------------------------------------


@libreoffice
def test_values_openpyxl_data_only(recalculated):
    ws = openpyxl.load_workbook(recalculated["formulas"], data_only=True)["申报表"]
    for ref, want in expected_main().items():
        got = ws[ref].value
        want = lo_cached_number(want)
        if isinstance(want, bool):
            assert got is want, (ref, got, want)
        else:
            assert got == want, (ref, got, want)


@libreoffice
def test_values_calamine(recalculated):
    sheet = CalamineWorkbook.from_path(str(recalculated["formulas"])).get_sheet_by_name("申报表")
    rows = sheet.to_python(skip_empty_area=False)  # rows[r-1][c-1]; default trims empty leading rows
    for ref, want in expected_main().items():
        row = int(ref[1:])
        got = rows[row - 1][2]
        want = lo_cached_number(want)
        if isinstance(want, bool):
            assert got is want, ref
        elif isinstance(want, (int, float)):
            assert float(got) == float(want), (ref, got, want)
        else:
            assert got == want, (ref, got, want)


@libreoffice
def test_sheet_scoped_name_resolves_per_sheet(recalculated):
    wb = openpyxl.load_workbook(recalculated["formulas"], data_only=True)
    assert wb["申报表"]["C10"].value == lo_cached_number(TAX_MAIN * 300)
    assert wb["附表"]["A1"].value == lo_cached_number(TAX_ANNEX * 100)
    assert wb["附表"]["A2"].value == lo_cached_number(INPUTS["B2"] + INPUTS["B3"] + 1)
    # The names survive with their scope; LibreOffice drops the quotes.
    wb_f = openpyxl.load_workbook(recalculated["formulas"])
    assert wb_f["申报表"].defined_names["税率"].attr_text == "参数!$B$1"
    assert wb_f["附表"].defined_names["税率"].attr_text == "附表!$B$1"
    assert "税率" not in wb_f.defined_names


@libreoffice
def test_formulas_kept_and_text_stays_text(recalculated):
    ws = openpyxl.load_workbook(recalculated["formulas"])["申报表"]
    assert ws["C3"].data_type == "f" and ws["C3"].value == "=ROUND(B3/B2*100,2)"
    assert ws["C10"].value == "=税率*B3"
    assert ws["C13"].data_type == "s" and ws["C13"].value == "=SUM(B2:B3)"


@libreoffice
def test_stale_cached_values_are_recalculated(recalculated):
    ws = openpyxl.load_workbook(recalculated["stale"], data_only=True).active
    assert (ws["A3"].value, ws["A4"].value) == (6, 7)


def test_python_round_differs_from_excel_round():
    # Documents why the Python engine must not use round().
    assert round(0.285, 2) == 0.28 and excel_round(0.285, 2) == 0.29
    assert round(-2.5) == -2 and excel_round(-2.5, 0) == -3


def test_lo_cached_number():
    assert lo_cached_number(1 / 3) == 0.333333333333333
    assert lo_cached_number(0.1 + 0.2) == 0.3
    assert lo_cached_number(45) == 45 and lo_cached_number(True) is True
    assert lo_cached_number("x") == "x"


# --------------------------------------------------------------------------
# round trip "saved in LibreOffice"
# --------------------------------------------------------------------------


def build_template() -> openpyxl.Workbook:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "申报表"
    meta = wb.create_sheet("_meta")
    meta.sheet_state = "hidden"
    for i, opt in enumerate(["是", "否", "不适用"], start=1):
        meta.cell(row=i, column=1, value=opt)
    vh = wb.create_sheet("_vh")
    vh.sheet_state = "veryHidden"
    vh["A1"] = "schema"

    ws.defined_names["营业收入"] = DefinedName("营业收入", attr_text="'申报表'!$B$2")
    ws["A2"], ws["B2"] = "营业收入", 100
    ws["A3"], ws["B3"] = "员工人数", 5
    ws["A4"], ws["B4"] = "是否高新", "是"
    ws["A5"], ws["B5"] = "成立日期", datetime.date(2020, 1, 2)
    ws["B6"] = "=营业收入*2+B3"

    props = CustomPropertyList()
    props.append(StringProperty(name="template_id", value="LX-2024-001"))
    props.append(IntProperty(name="schema_version", value=3))
    wb.custom_doc_props = props

    dvs = [
        (DataValidation(type="list", formula1="'_meta'!$A$1:$A$3", allow_blank=True), "B4"),
        (DataValidation(type="whole", operator="greaterThanOrEqual", formula1="0"), "B3"),
        (DataValidation(type="decimal", operator="greaterThanOrEqual", formula1="0"), "B2"),
        (DataValidation(type="date", operator="between",
                        formula1="DATE(1900,1,1)", formula2="DATE(2099,12,31)"), "B5"),
    ]
    for dv, ref in dvs:
        dv.showErrorMessage = True
        dv.error = "输入有误"
        ws.add_data_validation(dv)
        dv.add(ref)

    for ref in ("B2", "B3", "B4", "B5"):
        ws[ref].protection = Protection(locked=False)
    ws.protection.sheet = True
    ws.protection.password = "lanxi"

    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    return wb


@pytest.fixture(scope="module")
def roundtripped(lo_roundtrip):
    return lo_roundtrip({"template": build_template()})["template"]


@libreoffice
def test_roundtrip_still_opens_with_values(roundtripped):
    wb = openpyxl.load_workbook(roundtripped)
    assert wb.sheetnames == ["申报表", "_meta", "_vh"]
    assert wb["申报表"]["B6"].value == "=营业收入*2+B3"
    values = openpyxl.load_workbook(roundtripped, data_only=True)["申报表"]
    assert values["B6"].value == 205
    assert values["B5"].value == datetime.datetime(2020, 1, 2)
    cal = CalamineWorkbook.from_path(str(roundtripped))
    assert cal.sheet_names == ["申报表", "_meta", "_vh"]
    rows = cal.get_sheet_by_name("申报表").to_python(skip_empty_area=False)
    assert rows[5][1] == 205.0 and rows[3][1] == "是"


@libreoffice
def test_roundtrip_template_features(roundtripped):
    wb = openpyxl.load_workbook(roundtripped)
    ws = wb["申报表"]
    # sheet-scoped name
    assert ws.defined_names["营业收入"].attr_text == "申报表!$B$2"
    # hidden stays hidden; LibreOffice 7.4 turns veryHidden into plain hidden
    assert wb["_meta"].sheet_state == "hidden"
    assert wb["_vh"].sheet_state in ("hidden", "veryHidden")
    # custom properties survive (7.4 stores the int as vt:r8 -> 3.0)
    props = {p.name: p.value for p in wb.custom_doc_props.props}
    assert props["template_id"] == "LX-2024-001"
    assert props["schema_version"] == 3
    # data validation
    dvs = {str(dv.sqref): dv for dv in ws.data_validations.dataValidation}
    assert set(dvs) == {"B2", "B3", "B4", "B5"}
    assert dvs["B4"].type == "list" and dvs["B4"].formula1 == "_meta!$A$1:$A$3"
    assert (dvs["B3"].type, dvs["B3"].operator, dvs["B3"].formula1) == ("whole", "greaterThanOrEqual", "0")
    assert (dvs["B2"].type, dvs["B2"].operator, dvs["B2"].formula1) == ("decimal", "greaterThanOrEqual", "0")
    assert dvs["B5"].type == "date"
    assert all(dv.showErrorMessage and dv.error == "输入有误" for dv in dvs.values())
    # protection with unlocked input cells
    assert ws.protection.sheet and ws.protection.password.upper() == "C6C2"
    assert [ws[r].protection.locked for r in ("A2", "B2", "B3", "B4", "B5", "B6")] == [
        True, False, False, False, False, True]
    # print setup
    assert int(ws.page_setup.paperSize) == int(ws.PAPERSIZE_A4) == 9  # the constant is the str "9"
    assert int(ws.page_setup.fitToWidth) == 1 and int(ws.page_setup.fitToHeight) == 0
    assert ws.sheet_properties.pageSetUpPr.fitToPage


# --------------------------------------------------------------------------
# other formats
# --------------------------------------------------------------------------


@libreoffice
def test_convert_csv_and_pdf(soffice, tmp_path):
    src = tmp_path / "报表.xlsx"
    build_formulas().save(src)
    (csv_path,) = office.convert([src], tmp_path / "csv", "csv", recalc=True, soffice=soffice)
    assert csv_path.name == "报表.csv"
    lines = csv_path.read_text(encoding="utf-8").splitlines()  # first sheet only
    assert lines[:4] == [",,", ",1234.565,1534.565", ",300,24.3", ',25,"符合"']
    assert lines[12] == ',,"=SUM(B2:B3)"'  # text stays text (beware CSV injection in Excel)
    (pdf_path,) = office.convert([src], tmp_path / "pdf", "pdf", soffice=soffice)
    assert pdf_path.read_bytes()[:5] == b"%PDF-"


@libreoffice
def test_png_exports_or_explains(soffice, tmp_path):
    src = tmp_path / "t.xlsx"
    build_template().save(src)
    try:
        (png,) = office.convert([src], tmp_path / "png", "png", soffice=soffice)
    except OfficeError as exc:  # libreoffice-calc-nogui alone has no graphic filters
        assert exc.code == "OFFICE_CONVERSION_FAILED"
        assert "libreoffice-draw-nogui" in str(exc)
    else:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


@libreoffice
def test_partial_failure_reports_failed_and_keeps_good(soffice, tmp_path):
    good = tmp_path / "good.xlsx"
    build_template().save(good)
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(b"this is not a spreadsheet")
    with pytest.raises(OfficeError) as info:
        office.recalculate([good, bad], tmp_path / "out", soffice=soffice)
    err = info.value
    assert err.code == "OFFICE_CONVERSION_FAILED"
    assert err.failed == [bad.resolve()]
    assert err.converted == [(tmp_path / "out" / "good.xlsx").resolve()]
    assert openpyxl.load_workbook(err.converted[0]).sheetnames[0] == "申报表"
    assert "转换失败" in str(err) and "conversion failed" in str(err)


@libreoffice
def test_in_place_conversion(soffice, tmp_path):
    src = tmp_path / "same.xlsx"
    build_template().save(src)
    (out,) = office.recalculate([src], tmp_path, soffice=soffice)
    assert out == src.resolve()
    assert openpyxl.load_workbook(out, data_only=True)["申报表"]["B6"].value == 205


@libreoffice
def test_timeout_kills_soffice_and_cleans_profile(soffice, tmp_path, monkeypatch):
    src = tmp_path / "slow.xlsx"
    build_template().save(src)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(OfficeError) as info:
        office.recalculate([src], tmp_path / "out", timeout=0.01, soffice=soffice)
    assert info.value.code == "OFFICE_TIMEOUT"
    assert list(scratch.iterdir()) == []  # temporary profile removed
    if sys.platform.startswith("linux"):
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert str(scratch) not in ps  # no soffice left running with that profile


def test_missing_soffice(monkeypatch, tmp_path):
    src = tmp_path / "a.xlsx"
    openpyxl.Workbook().save(src)
    monkeypatch.setattr(office, "find_soffice", lambda: None)
    with pytest.raises(OfficeError) as info:
        office.recalculate([src], tmp_path / "out")
    assert info.value.code == "OFFICE_NOT_FOUND"
    assert "apt-get install libreoffice-calc-nogui" in str(info.value)
    assert "未找到" in str(info.value)
    assert isinstance(info.value, RuntimeError)


def test_input_errors(tmp_path):
    with pytest.raises(OfficeError) as info:
        office.recalculate([tmp_path / "nope.xlsx"], tmp_path)
    assert info.value.code == "OFFICE_INPUT_NOT_FOUND"

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        openpyxl.Workbook().save(tmp_path / d / "same.xlsx")
    with pytest.raises(OfficeError) as info:
        office.recalculate([tmp_path / "a" / "same.xlsx", tmp_path / "b" / "same.xlsx"], tmp_path)
    assert info.value.code == "OFFICE_DUPLICATE_OUTPUT"

    with pytest.raises(OfficeError) as info:
        office.convert([tmp_path / "a" / "same.xlsx"], tmp_path, "docx")
    assert info.value.code == "OFFICE_UNSUPPORTED_FORMAT"

    assert office.recalculate([], tmp_path) == []


@pytest.mark.skipif(sys.platform.startswith("win"), reason="uses a shell-script stand-in")
def test_find_soffice_env_override(monkeypatch, tmp_path):
    fake = tmp_path / "my-soffice"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv(office.SOFFICE_ENV, str(fake))
    assert office.find_soffice() == str(fake)
    monkeypatch.setenv(office.SOFFICE_ENV, str(tmp_path / "missing"))
    assert office.find_soffice() != str(tmp_path / "missing")  # falls back to PATH etc.
