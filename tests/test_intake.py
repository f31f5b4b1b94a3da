"""The checker of returned declarations (issue #5): exact codes and cells, hostile files, batches.

The corpus is made here: valid declarations of every article are filled from the
hand-worked award cases with ``templates.fill``, then spoiled the way enterprises spoil
them (openpyxl edits or zip edits); hostile files come from ``lanxi_xl.samples`` plus
three aimed at python-calamine itself; a few files go through real LibreOffice.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from formcases import MODEL, award_cases, credit_code, instance_for
from lanxi_xl import intake
from lanxi_xl.cli import main
from lanxi_xl.errors import InputError
from lanxi_xl.intake import CODES, annotate, check_file, check_paths, checked_declaration, report_to_json
from lanxi_xl.samples import make_all, make_slow_parsing, minimal_workbook, rewrite_zip
from lanxi_xl.templates import build_calculator, fill, workbook_bytes

ROOT = Path(__file__).resolve().parents[1]
COVER = MODEL.cover_sheet
CELL = {f.key: f.cell for f in MODEL.all_fields}


def first_payable() -> dict[str, dict[str, Any]]:
    """One payable hand-worked case per article (multi-clause articles: the first clause)."""
    out: dict[str, dict[str, Any]] = {}
    for case in award_cases():
        art = case["clause"].split(".")[0]
        if case.get("status") == "payable" and art not in out and not case.get("year"):
            out[art] = case
    assert sorted(out, key=int) == sorted(MODEL.articles, key=int)
    return out


CASES = first_payable()


def filled(folder: Path, name: str, article: str = "8", n: int = 1, **common: Any) -> Path:
    case = CASES[article]
    inst = instance_for(case["clause"], case["facts"], 2023, n=n)
    inst["common"].update(common)
    return fill(article, inst, folder / name)


def edit(src: Path, dst: Path, change: Callable[[openpyxl.Workbook], None]) -> Path:
    wb = openpyxl.load_workbook(src)
    change(wb)
    wb.save(dst)
    return dst


def put(sheet: str, cell: str, value: Any) -> Callable[[openpyxl.Workbook], None]:
    def change(wb: openpyxl.Workbook) -> None:
        wb[sheet][cell].value = value
        if isinstance(value, str) and not value.startswith("="):
            wb[sheet][cell].data_type = "e" if value.startswith("#") else "s"

    return change


def both(*changes: Callable[[openpyxl.Workbook], None]) -> Callable[[openpyxl.Workbook], None]:
    def change(wb: openpyxl.Workbook) -> None:
        for c in changes:
            c(wb)

    return change


def without_parts(src: Path, dst: Path, *names: str) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            if item.filename not in names:
                zout.writestr(item.filename, zin.read(item.filename))
    return dst


def patched(src: Path, dst: Path, part: str, old: bytes, new: bytes) -> Path:
    with zipfile.ZipFile(src) as zf:
        data = zf.read(part)
    assert old in data, (part, old)
    return rewrite_zip(src, dst, replace={part: data.replace(old, new)})


def found(report: intake.FileReport) -> list[tuple[str, str]]:
    return [(e.code, e.where) for e in report.errors]


def flagged(report: intake.FileReport) -> list[tuple[str, str]]:
    return [(e.code, e.where) for e in report.flags]


# --- the corpus ----------------------------------------------------------------------------------

S8, S2, S3, S4, S7 = "第8条", "第2条", "第3条", "第4条", "第7条"

# name -> (article, change, expected errors (code, where), expected flags)
SPOILED: dict[str, tuple[str, Callable[[openpyxl.Workbook], None], list[tuple[str, str]], list[tuple[str, str]]]] = {
    "number-as-text": ("8", put(S8, "C7", "60万"), [("NUMBER_AS_TEXT", f"{S8}!C7")], []),
    "chinese-numeral": ("8", put(S8, "C7", "六十万"), [("NUMBER_AS_TEXT", f"{S8}!C7")], []),
    "thousands": ("8", put(S8, "C7", "1,000"), [("NUMBER_AS_TEXT", f"{S8}!C7")], []),
    "formula": ("8", put(S8, "C7", "=SUM(1,2)*7"), [("FORMULA_IN_INPUT", f"{S8}!C7")], []),
    "error-value": ("8", put(S8, "C7", "#N/A"), [("CELL_ERROR_VALUE", f"{S8}!C7")], []),
    "negative": ("8", put(S8, "C7", -5), [("OUT_OF_RANGE", f"{S8}!C7")], []),
    "check-digit": ("8", put(COVER, CELL["credit_code"], credit_code(1)[:17] + "X"),
                    [("CREDIT_CODE_CHECK_DIGIT", f"{COVER}!{CELL['credit_code']}")], []),
    "missing": ("8", both(put(COVER, CELL["contact"], None), put(COVER, CELL["mobile"], None)),
                [("REQUIRED_MISSING", f"{COVER}!{CELL['contact']}"), ("REQUIRED_MISSING", f"{COVER}!{CELL['mobile']}")], []),
    "bad-mobile": ("8", put(COVER, CELL["mobile"], "1380000"), [("BAD_FORMAT", f"{COVER}!{CELL['mobile']}")], []),
    "long-account": ("8", put(COVER, CELL["bank_account"], 6228480402564890018),
                     [("NUMBER_PRECISION_LOST", f"{COVER}!{CELL['bank_account']}")], []),
    "account-typed-with-line-break": ("8", put(COVER, CELL["bank_account"], "6228480402564890\n"), [], []),
    "account-with-spaces": ("8", put(COVER, CELL["bank_account"], "6228 4804 0256 4890"),
                            [("BAD_FORMAT", f"{COVER}!{CELL['bank_account']}")], []),
    "pension-150%": ("8", put(COVER, CELL["pension_rate"], 1.5), [("OUT_OF_RANGE", f"{COVER}!{CELL['pension_rate']}")], []),
    "yes-no": ("8", put(COVER, CELL["dishonest"], "没有"), [("WRONG_TYPE", f"{COVER}!{CELL['dishonest']}")], []),
    "label": ("8", put(S8, "B7", "跨境销售额（万元）"), [("LABEL_CHANGED", f"{S8}!B7")], []),
    "inserted-row": ("8", lambda wb: wb[S8].insert_rows(6), [("LAYOUT_CHANGED", f"{S8}!A6")], []),
    "estimate-typed": ("8", put(S8, "C3", 999999), [("FORMULA_REPLACED", f"{S8}!C3")], []),
    "note": ("8", put(S8, "H20", "备注：见附件"), [], [("LOCKED_CELL_CHANGED", f"{S8}!H20")]),
    "choice": ("2", put(S2, "C7", "市级"), [("NOT_IN_LIST", f"{S2}!C7")], []),
    "half-month": ("3", put(S3, "E11", 12.5), [("WRONG_TYPE", f"{S3}!E11")], []),
    "date-text": ("7", put(S7, "C10", "2023年5月1日"), [("BAD_FORMAT", f"{S7}!C10")], []),
    "no-events": ("7", both(*(put(S7, f"{c}10", None) for c in "BCDEF")), [("TOO_FEW_ROWS", f"{S7}!B10")], []),
    "no-part": ("4", put(S4, "C11", None), [("NO_CLAUSE_DECLARED", f"{S4}!C11")], []),
    "many-at-once": ("8", both(put(S8, "C7", "六十万"), put(COVER, CELL["contact"], None),
                               put(COVER, CELL["credit_code"], credit_code(1)[:17] + "X"), put(S8, "B7", "销售额")),
                     [("CREDIT_CODE_CHECK_DIGIT", f"{COVER}!{CELL['credit_code']}"),
                      ("REQUIRED_MISSING", f"{COVER}!{CELL['contact']}"),
                      ("LABEL_CHANGED", f"{S8}!B7"), ("NUMBER_AS_TEXT", f"{S8}!C7")], []),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("returned")
    base = root / "base"
    base.mkdir()
    files: dict[str, Path] = {}
    for art in CASES:
        files[f"valid-{art}"] = filled(base, f"art-{art}.xlsx", art, n=int(art))
    both_arts = instance_for("8", CASES["8"]["facts"], 2023, n=20)
    both_arts["articles"].update(instance_for("7", CASES["7"]["facts"], 2023, n=20)["articles"])
    files["valid-all"] = fill("all", both_arts, base / "all.xlsx")
    spoiled = root / "spoiled"
    spoiled.mkdir()
    for name, (art, change, _, _) in SPOILED.items():
        files[name] = edit(files[f"valid-{art}"], spoiled / f"{name}.xlsx", change)
    # Formula text typed as text: must come back as text in every output.
    def formula_as_text(wb: openpyxl.Workbook) -> None:
        wb[COVER][CELL["mobile"]].value = "=1+1"
        wb[COVER][CELL["mobile"]].data_type = "s"

    files["formula-text"] = edit(files["valid-8"], spoiled / "formula-text.xlsx", formula_as_text)
    t = root / "template"
    t.mkdir()
    v8 = files["valid-8"]
    files["outdated"] = patched(v8, t / "outdated.xlsx", "docProps/custom.xml", b">2022.1<", b">2021.1<")
    files["foreign"] = patched(v8, t / "foreign.xlsx", "docProps/custom.xml", b">lanxi-xl<", b">other-tool<")
    files["meta-only"] = without_parts(v8, t / "meta-only.xlsx", "docProps/custom.xml")
    files["renamed-sheet"] = edit(v8, t / "renamed-sheet.xlsx", lambda wb: setattr(wb[S8], "title", "跨境"))
    files["no-stamp"] = minimal_workbook(t / "no-stamp.xlsx")
    (t / "calculator.xlsx").write_bytes(workbook_bytes(build_calculator(MODEL)))
    files["calculator"] = t / "calculator.xlsx"
    files["macro"] = rewrite_zip(v8, t / "macro.xlsm", add={"xl/vbaProject.bin": b"\xd0\xcf\x11\xe0fake-vba"})
    files["external-link"] = rewrite_zip(
        v8, t / "external-link.xlsx",
        add={"xl/externalLinks/externalLink1.xml": b'<?xml version="1.0"?><externalLink/>'})
    return files


# --- valid declarations ----------------------------------------------------------------------------


def test_every_article_reads_valid_with_the_engines_award(corpus: dict[str, Path]) -> None:
    for art, case in CASES.items():
        report = check_file(corpus[f"valid-{art}"])
        assert report.valid and not report.errors and not report.flags, (art, found(report), flagged(report))
        assert report.target == art and report.template == f"art-{art}@{MODEL.template_version}"
        award = next(a for a in report.awards if a.clause_id == case["clause"])
        assert award.amount == Decimal(case["amount"]), art
        assert report.explanations and "计算过程" in report.explanations[0]


def test_combined_declaration(corpus: dict[str, Path]) -> None:
    report = check_file(corpus["valid-all"])
    assert report.valid and report.target == "all" and report.template == f"declaration@{MODEL.template_version}"
    assert sorted(a.clause_id for a in report.awards) == ["7", "8"]


def test_stamp_from_the_meta_sheet_when_properties_are_gone(corpus: dict[str, Path]) -> None:
    report = check_file(corpus["meta-only"])
    assert report.valid and report.target == "8" and report.stamp["generator"] == "lanxi-xl"


# --- every error kind, exact codes and cells --------------------------------------------------------


@pytest.mark.parametrize("name", list(SPOILED))
def test_each_error_kind_names_its_cell(corpus: dict[str, Path], name: str) -> None:
    _, _, errors, flags = SPOILED[name]
    report = check_file(corpus[name])
    assert found(report) == errors, name
    assert flagged(report) == flags, name
    assert report.valid == (not errors)
    for e in report.problems:
        assert e.code in CODES and CODES[e.code].severity == e.severity
        assert e.message and not e.message.isascii()  # Chinese
    if errors:
        assert not report.awards  # nothing is paid on a wrong form


def test_coded_text_loses_the_line_break_typed_after_it(corpus: dict[str, Path]) -> None:
    # Python's "$" matches before a final line break, so the pattern alone would keep it.
    report = check_file(corpus["account-typed-with-line-break"])
    assert report.instance is not None and report.instance["common"]["bank_account"] == "6228480402564890"


def test_messages_say_what_was_found_and_what_is_expected(corpus: dict[str, Path]) -> None:
    def message(name: str) -> str:
        return check_file(corpus[name]).errors[0].message

    assert "“60万”" in message("number-as-text") and "600000" in message("number-as-text")
    assert "600000" in message("chinese-numeral") and "1000" in message("thousands")
    right = credit_code(1)[17]
    assert f"第18位应为“{right}”" in message("check-digit")
    assert "未填写" in message("missing") and "「联系人」" in message("missing")
    assert "办公研发、仓储" not in message("choice") and "国家级" in message("choice")
    assert "「租赁明细」第1行的「当年租赁经营月数」" in message("half-month")
    assert "0%至100%" in message("pension-150%")
    assert "插入了1行" in message("inserted-row")


def test_one_error_per_cell(corpus: dict[str, Path]) -> None:
    for name in ("number-as-text", "formula", "error-value"):
        report = check_file(corpus[name])
        cells = [e.where for e in report.errors]
        assert len(cells) == len(set(cells)) == 1, (name, found(report))


def test_which_template_to_use(corpus: dict[str, Path]) -> None:
    expect = {"outdated": "TEMPLATE_OUTDATED", "foreign": "FOREIGN_TEMPLATE", "no-stamp": "NOT_A_TEMPLATE",
              "calculator": "NOT_A_DECLARATION", "renamed-sheet": "SHEET_MISSING"}
    for name, code in expect.items():
        report = check_file(corpus[name])
        assert [e.code for e in report.errors] == [code], (name, found(report))
        assert not report.valid and report.instance is None
    assert "art-8.xlsx" in check_file(corpus["outdated"]).errors[0].message
    assert "2022.1" in check_file(corpus["outdated"]).errors[0].message
    assert check_file(corpus["renamed-sheet"]).errors[0].where == S8


def test_macros_and_external_links_are_flagged_not_refused(corpus: dict[str, Path]) -> None:
    macro = check_file(corpus["macro"])
    assert macro.valid and macro.kind == "xlsm" and flagged(macro) == [("MACRO_PRESENT", "")]
    link = check_file(corpus["external-link"])
    assert link.valid and flagged(link) == [("EXTERNAL_LINKS", "")]


# --- hostile and broken files -------------------------------------------------------------------------


def lying_sizes(src: Path, dst: Path, part: str, declared: int) -> Path:
    """``part`` grown to 20 MB of valid XML while both zip headers still declare ``declared`` bytes."""
    body = b"<si><t>aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa</t></si>" * 500_000
    sst = b'<?xml version="1.0"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">' + body + b"</sst>"
    out = with_shared_strings(src, dst, sst)
    data = bytearray(out.read_bytes())
    name = part.encode()
    for sig, size_at, name_len_at, name_at in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
        pos = data.find(sig)
        while pos >= 0:
            length = struct.unpack("<H", data[pos + name_len_at: pos + name_len_at + 2])[0]
            if data[pos + name_at: pos + name_at + length] == name:
                struct.pack_into("<I", data, pos + size_at, declared)
            pos = data.find(sig, pos + 4)
    dst.write_bytes(bytes(data))
    return dst


def with_shared_strings(src: Path, dst: Path, sst: bytes) -> Path:
    with zipfile.ZipFile(src) as zf:
        types = zf.read("[Content_Types].xml")
        rels = zf.read("xl/_rels/workbook.xml.rels")
    types = types.replace(b"</Types>", b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
                                       b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>')
    rels = rels.replace(b"</Relationships>", b'<Relationship Id="rId99" Type="http://schemas.openxmlformats.org/'
                                             b'officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
                                             b"</Relationships>")
    return rewrite_zip(src, dst, replace={"[Content_Types].xml": types, "xl/_rels/workbook.xml.rels": rels},
                       add={"xl/sharedStrings.xml": sst})


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, corpus: dict[str, Path]) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    files = make_all(folder)
    v8 = corpus["valid-8"]
    # Aimed at calamine: each of these aborted the whole process before the guards.
    files["SHEET_TOO_LARGE:far-cell"] = patched(
        v8, folder / "far-cell.xlsx", "xl/worksheets/sheet2.xml", b"</sheetData>",
        b'<row r="1048576"><c r="XFD1048576" t="n"><v>1</v></c></row></sheetData>')
    files["SUSPICIOUS_STRUCTURE"] = with_shared_strings(
        v8, folder / "shared-strings-lie.xlsx",
        b'<?xml version="1.0"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        b'count="4000000000" uniqueCount="4000000000"><si><t>a</t></si></sst>')
    files["CORRUPT_WORKBOOK:lying-sizes"] = lying_sizes(v8, folder / "lying-sizes.xlsx", "xl/sharedStrings.xml", 5000)
    return files


def test_every_hostile_kind_is_a_per_file_error(hostile: dict[str, Path]) -> None:
    for label, path in hostile.items():
        code = label.split(":")[0]
        report = check_file(path)
        assert code in [e.code for e in report.problems], (label, found(report), flagged(report))
        if CODES[code].severity == "error":
            assert not report.valid and report.instance is None and not report.awards, label
        assert report.sha256 and report.path == path


def test_calamine_is_never_handed_what_aborts_it(hostile: dict[str, Path], corpus: dict[str, Path]) -> None:
    """A real process: a Rust allocation failure would kill it, not raise."""
    files = [hostile["SHEET_TOO_LARGE:far-cell"], hostile["SUSPICIOUS_STRUCTURE"],
             hostile["CORRUPT_WORKBOOK:lying-sizes"], corpus["valid-8"]]
    done = subprocess.run([sys.executable, "-m", "lanxi_xl.cli", "check", "--json", *map(str, files)],
                          capture_output=True, text=True, encoding="utf-8", timeout=120, cwd=ROOT)
    assert done.returncode == 1, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert [o["valid"] for o in out] == [False, False, False, True]
    assert [o["errors"][0]["code"] for o in out[:3]] == ["SHEET_TOO_LARGE", "SUSPICIOUS_STRUCTURE", "CORRUPT_WORKBOOK"]


# What each part shaped against a backtracking reader comes to (half a megabyte each, under
# every size and ratio cap): a per-file error where the part is needed, nothing where not.
SLOW_PARSING = {
    "sheet-cells-never-closed": ["CORRUPT_WORKBOOK"],
    "sheet-cell-attributes-never-end": ["CORRUPT_WORKBOOK"],
    "sheet-cell-in-cell": ["CORRUPT_WORKBOOK"],
    "sheet-formulas-outside-cells": ["LAYOUT_CHANGED"] + ["LABEL_CHANGED"] * 10,
    "shared-strings-never-closed": [],  # no cell refers to the table
    "styles-cellxfs-never-closed": ["CORRUPT_WORKBOOK"],
    "styles-format-code-brackets-never-closed": [],
    "custom-properties-never-closed": [],  # the stamp is read from the _meta sheet as well
    "workbook-sheet-tags-never-end": ["CORRUPT_WORKBOOK"],  # not well-formed: refused as calamine refuses it
    "workbook-attribute-one-long-word": ["CORRUPT_WORKBOOK"],  # not well-formed: refused as calamine refuses it
    "rels-never-end": ["CORRUPT_WORKBOOK"],  # not well-formed: refused as calamine refuses it
}


def test_parts_shaped_against_the_reader_take_linear_time(tmp_path: Path, corpus: dict[str, Path]) -> None:
    """Each of these took the reader time quadratic in the part's length (seconds at 64 KB,
    hours at 1 MB): unclosed tags and endless attribute lists rescanned from every start.
    A real process with a deadline: a regular expression cannot be interrupted."""
    files = make_slow_parsing(corpus["valid-8"], tmp_path / "slow", 512 * 1024)
    assert set(files) == set(SLOW_PARSING)
    done = subprocess.run([sys.executable, "-m", "lanxi_xl.cli", "check", "--json", str(tmp_path / "slow")],
                          capture_output=True, text=True, encoding="utf-8", timeout=120, cwd=ROOT)
    assert done.returncode == 1, done.stderr[-2000:]
    out = {Path(o["file"]).name: o for o in json.loads(done.stdout)}
    for kind, path in files.items():
        report = out[path.name]
        assert sorted(e["code"] for e in report["errors"]) == sorted(SLOW_PARSING[kind]), (kind, report["errors"][:3])
        assert report["valid"] == (not SLOW_PARSING[kind]), kind


def test_unusual_sheet_xml_takes_the_exact_parse() -> None:
    ns = b'xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    prefixed = (b"<x:worksheet " + ns + b"><x:sheetData><x:row r=\"7\"><x:c r=\"C7\"><x:f>1+1</x:f><x:v>2</x:v></x:c>"
                b"<x:c r=\"XFD7\"><x:v>1</x:v></x:c></x:row></x:sheetData></x:worksheet>")
    scan = intake.scan_sheet_xml(prefixed)
    assert scan.formulas == {"C7"} and scan.cols == 16384
    implicit = (b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
                b"<row><c><v>1</v></c><c t=\"e\"><f>1/0</f><v>#DIV/0!</v></c></row><!-- x --></sheetData></worksheet>")
    scan = intake.scan_sheet_xml(implicit)
    assert scan.formulas == {"B1"} and scan.errors == {"B1"} and (scan.rows, scan.cols) == (1, 2)


# --- batches, JSON, the command ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, corpus: dict[str, Path], hostile: dict[str, Path]) -> Path:
    folder = tmp_path_factory.mktemp("batch")
    picks = ["valid-8", "valid-3", "number-as-text", "inserted-row", "macro", "foreign"]
    for name in picks:
        (folder / corpus[name].name).write_bytes(corpus[name].read_bytes())
    sub = folder / "hostile"
    sub.mkdir()
    for label in ("ZIP_BOMB", "XML_ENTITIES", "NOT_A_WORKBOOK:csv", "CORRUPT_WORKBOOK", "LEGACY_XLS", "ENCRYPTED_WORKBOOK"):
        (sub / hostile[label].name).write_bytes(hostile[label].read_bytes())
    (folder / "~$art-8.xlsx").write_bytes(b"lock")  # Excel's lock file: not a declaration
    (folder / "notes.txt").write_text("x", encoding="utf-8")
    return folder


def test_a_mixed_batch_reports_every_file(batch: Path) -> None:
    seen: list[tuple[int, int, str]] = []
    reports = check_paths([batch], progress=lambda done, total, report, copy: seen.append((done, total, report.name)))
    names = [r.name for r in reports]
    assert names == sorted(names) and len(names) == 12
    assert "hostile/zip-bomb.xlsx" in names and "hostile/legacy.xls" in names
    assert [s[2] for s in seen] == names and seen[-1][:2] == (12, 12)
    good = {r.name for r in reports if r.valid}
    assert good == {"art-8.xlsx", "art-3.xlsx", "macro.xlsm"}


def test_cli_check_prints_each_file_and_exits_1(batch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(batch)]) == 1
    out = capsys.readouterr().out
    assert "✓ art-8.xlsx" in out and "✗ number-as-text.xlsx" in out
    assert "  [NUMBER_AS_TEXT] 第8条!C7 「第三方平台跨境B2C销售额」填写的是文字“60万”" in out
    assert "✗ hostile/zip-bomb.xlsx" in out and "[ZIP_BOMB]" in out
    assert "共检查12份：通过3份，未通过9份" in out


def test_cli_check_json_and_exit_codes(corpus: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--json", str(corpus["valid-8"])]) == 0
    [doc] = json.loads(capsys.readouterr().out)
    assert doc["valid"] and doc["template"]["article"] == "8" and doc["template"]["template_version"] == "2022.1"
    assert doc["data"]["articles"]["8"] and doc["awards"][0]["trace"] and doc["total"] == CASES["8"]["amount"]
    assert doc["sha256"] == hashlib.sha256(corpus["valid-8"].read_bytes()).hexdigest()
    assert main(["check", "--json", str(corpus["number-as-text"])]) == 1
    [doc] = json.loads(capsys.readouterr().out)
    assert doc["errors"][0] | {"message": ""} == {
        "code": "NUMBER_AS_TEXT", "message": "", "severity": "error", "sheet": S8, "cell": "C7",
        "where": f"{S8}!C7", "field": "第三方平台跨境B2C销售额", "pointer": "/articles/8/usd_sales", "value": "60万"}
    assert main(["check", str(corpus["valid-8"].parent / "missing.xlsx")]) == 2
    assert "PATH_NOT_FOUND" in capsys.readouterr().err


def test_report_to_json_is_plain_json(corpus: dict[str, Path], hostile: dict[str, Path]) -> None:
    for path in (corpus["valid-3"], corpus["many-at-once"], hostile["ZIP_BOMB"]):
        doc = report_to_json(check_file(path))
        assert json.loads(json.dumps(doc, ensure_ascii=False)) == doc


# --- the annotated copy ---------------------------------------------------------------------------------


def test_annotated_copy_marks_each_cell_and_lists_every_error(corpus: dict[str, Path], tmp_path: Path) -> None:
    src = corpus["many-at-once"]
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    report = check_file(src)
    copy = annotate(report, tmp_path / "out")
    assert copy == tmp_path / "out" / src.name
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before  # the input is never modified
    wb = openpyxl.load_workbook(copy)
    assert wb.sheetnames[0] == "审核意见"
    for e in report.errors:
        if e.cell:
            cell = wb[e.sheet][e.cell]
            assert cell.fill.fgColor.rgb.endswith(intake.ERROR_COLOR), e.where
            assert e.code in cell.comment.text and e.message in cell.comment.text
    listed = [c.value for c in wb["审核意见"]["F"] if c.value in CODES]
    assert listed == [e.code for e in report.errors]
    # the annotated copy is checked again as the declaration it still is
    assert found(check_file(copy)) == found(report)


def test_formula_text_stays_text_in_the_annotated_copy(corpus: dict[str, Path], tmp_path: Path) -> None:
    report = check_file(corpus["formula-text"])
    assert found(report) == [("BAD_FORMAT", f"{COVER}!{CELL['mobile']}")] and report.errors[0].value == "=1+1"
    copy = annotate(report, tmp_path)
    ws = openpyxl.load_workbook(copy)["审核意见"]
    typed = [c for c in ws["D"] if c.value == "=1+1"]
    assert typed and all(c.data_type == "s" for c in typed)


def test_macros_never_leave_and_hostile_files_get_no_copy(corpus: dict[str, Path], hostile: dict[str, Path],
                                                          tmp_path: Path) -> None:
    copy = annotate(check_file(corpus["macro"]), tmp_path)
    assert copy is not None and copy.suffix == ".xlsx"
    with zipfile.ZipFile(copy) as zf:
        assert not any("vba" in n.lower() for n in zf.namelist())
    for label in ("ZIP_BOMB", "XML_ENTITIES", "CORRUPT_WORKBOOK", "LEGACY_XLS"):
        assert annotate(check_file(hostile[label]), tmp_path) is None


def test_annotating_next_to_the_inputs_is_refused(batch: Path) -> None:
    with pytest.raises(InputError) as err:
        check_paths([batch], annotate_dir=batch)
    assert err.value.code == "ANNOTATE_OVER_INPUT"


# --- LibreOffice round trip -------------------------------------------------------------------------------

LO_FILES = ("valid-3", "valid-7", "valid-all", "number-as-text", "formula", "inserted-row", "label", "many-at-once")


@pytest.fixture(scope="module")
def saved_by_libreoffice(lo_roundtrip: Any, corpus: dict[str, Path]) -> dict[str, Path]:
    return lo_roundtrip({name: corpus[name] for name in LO_FILES})


@pytest.mark.libreoffice
def test_files_saved_by_libreoffice_report_the_same(saved_by_libreoffice: dict[str, Path],
                                                    corpus: dict[str, Path]) -> None:
    for name, path in saved_by_libreoffice.items():
        with zipfile.ZipFile(path) as zf:
            workbook = zf.read("xl/workbook.xml")
            assert b"sharedStrings.xml" in zf.read("xl/_rels/workbook.xml.rels")  # LibreOffice's own writing
        assert re.search(rb'name="_meta"[^>]*state="hidden"', workbook), "LibreOffice turns veryHidden into hidden"
        original, again = check_file(corpus[name]), check_file(path)
        assert found(again) == found(original), name
        assert again.valid == original.valid and again.target == original.target
        assert [a.amount for a in again.awards] == [a.amount for a in original.awards]
        assert again.instance == original.instance or not original.valid


# --- the XML Excel and WPS write ---------------------------------------------------------------------------
# No Excel or WPS here to save a file with, so a filled form is rewritten in the dialect
# they write (as seen in files they save): every string in a shared table, CJK strings
# with a <phoneticPr>, rows with spans and x14ac:dyDescent, mc:Ignorable and xr:uid on the
# sheet, the custom properties' attributes in Excel's order. Synthetic, and said so: it
# pins what the reader accepts, it does not prove Excel.

_INLINE = re.compile(rb'<c r="([A-Z]+[0-9]+)"((?: s="[0-9]+")?) t="inlineStr"><is><t([^>]*)>([^<]*)</t></is></c>')
_EXCEL_ROOT = (b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
               b'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" '
               b'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" mc:Ignorable="x14ac xr" '
               b'xmlns:x14ac="http://schemas.microsoft.com/office/spreadsheetml/2009/9/ac" '
               b'xmlns:xr="http://schemas.microsoft.com/office/spreadsheetml/2014/revision" '
               b'xr:uid="{00000000-0001-0000-0000-000000000000}">')


def excel_dialect(src: Path, dst: Path) -> Path:
    with zipfile.ZipFile(src) as zf:
        parts = {n: zf.read(n) for n in zf.namelist()}
    table: dict[bytes, int] = {}
    entries: list[bytes] = []

    def shared(m: re.Match[bytes]) -> bytes:
        key = m.group(3) + b">" + m.group(4)
        if key not in table:
            table[key] = len(entries)
            phonetic = b'<phoneticPr fontId="1" type="noConversion"/>' if not m.group(4).isascii() else b""
            entries.append(b"<si><t" + m.group(3) + b">" + m.group(4) + b"</t>" + phonetic + b"</si>")
        return b'<c r="' + m.group(1) + b'"' + m.group(2) + b' t="s"><v>%d</v></c>' % table[key]

    for name in [n for n in parts if n.startswith("xl/worksheets/sheet")]:
        xml = re.sub(rb' t="inlineStr" ?/>', b"/>", _INLINE.sub(shared, parts[name]))  # a styled empty cell
        xml = re.sub(rb"<worksheet [^>]*>", _EXCEL_ROOT, xml, count=1)
        parts[name] = re.sub(rb'<row r="([0-9]+)"', rb'<row r="\1" spans="1:8" x14ac:dyDescent="0.25"', xml)
    parts["xl/sharedStrings.xml"] = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n<sst xmlns="http://schemas.openxmlformats.org/'
        b'spreadsheetml/2006/main" count="%d" uniqueCount="%d">' % (len(entries), len(entries)) + b"".join(entries) + b"</sst>")
    parts["xl/_rels/workbook.xml.rels"] = parts["xl/_rels/workbook.xml.rels"].replace(b"</Relationships>", (
        b'<Relationship Id="rId99" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        b'sharedStrings" Target="sharedStrings.xml"/></Relationships>'))
    parts["[Content_Types].xml"] = parts["[Content_Types].xml"].replace(b"</Types>", (
        b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.'
        b'spreadsheetml.sharedStrings+xml"/></Types>'))
    parts["docProps/custom.xml"] = re.sub(  # Excel: fmtid, pid, then name
        rb'<property ([^>]*?)(name="[^"]*") ([^>]*)>', rb"<property \3 \2>", parts["docProps/custom.xml"])
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    return dst


@pytest.mark.parametrize("name", ["valid-3", "valid-7", "valid-all", "number-as-text", "formula", "label",
                                  "many-at-once", "long-account", "date-text"])
def test_files_in_excels_dialect_report_the_same(tmp_path: Path, corpus: dict[str, Path], name: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = excel_dialect(corpus[name], tmp_path / f"excel-{name}.xlsx")
    with zipfile.ZipFile(path) as zf:
        assert b"inlineStr" not in zf.read("xl/worksheets/sheet1.xml") and b"phoneticPr" in zf.read("xl/sharedStrings.xml")
    original = check_file(corpus[name])

    def no_calamine(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the sheets should be read without python-calamine")
    monkeypatch.setattr(intake.python_calamine.CalamineWorkbook, "from_filelike", no_calamine)
    again = check_file(path)
    assert found(again) == found(original) and flagged(again) == flagged(original), name
    assert again.valid == original.valid and again.target == original.target and again.instance == original.instance
    assert [(a.clause_id, a.amount) for a in again.awards] == [(a.clause_id, a.amount) for a in original.awards]


# --- review: a folder of returned workbooks, end to end -------------------------------------------------------


def test_review_reads_returned_workbooks(tmp_path: Path, corpus: dict[str, Path], hostile: dict[str, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "2023"
    folder.mkdir()
    for name in ("valid-8", "valid-3", "number-as-text", "macro"):
        (folder / corpus[name].name).write_bytes(corpus[name].read_bytes())
    (folder / "zip-bomb.xlsx").write_bytes(hostile["ZIP_BOMB"].read_bytes())
    db, ledger = tmp_path / "reg.sqlite", tmp_path / "台账.xlsx"
    assert main(["review", str(folder), "--year", "2023", "--db", str(db), "-o", str(ledger)]) == 0
    out = capsys.readouterr().out
    assert "读取申报文件5份" in out and "未通过校验2份" in out and ledger.is_file()
    from lanxi_xl.registry import open_registry

    with open_registry(db) as reg:
        decls = {d.file_name: d for d in reg.declarations(2023)}
        decisions = reg.decisions(2023)
    assert set(decls) == {"art-8.xlsx", "art-3.xlsx", "number-as-text.xlsx", "macro.xlsm", "zip-bomb.xlsx"}
    assert not decls["number-as-text.xlsx"].valid and not decls["zip-bomb.xlsx"].valid
    assert decls["number-as-text.xlsx"].errors[0]["cell"] == f"{S8}!C7"
    assert decls["art-3.xlsx"].template == f"art-3@{MODEL.template_version}"
    paid = {(d.claim.file_name, d.claim.clause_id): d.decision for d in decisions}
    assert paid[("art-3.xlsx", "3")].amount == Decimal(CASES["3"]["amount"])
    assert paid[("number-as-text.xlsx", "8")].outcome == "invalid"


def test_a_ledger_written_into_the_reviewed_folder_is_passed_over(tmp_path: Path, corpus: dict[str, Path],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "2023"
    folder.mkdir()
    (folder / "art-8.xlsx").write_bytes(corpus["valid-8"].read_bytes())
    db, ledger = tmp_path / "reg.sqlite", folder / "台账.xlsx"
    for _ in range(2):  # the second review meets the ledger the first one wrote
        assert main(["review", str(folder), "--year", "2023", "--db", str(db), "-o", str(ledger)]) == 0
    out = capsys.readouterr().out
    assert "台账.xlsx" in out and "本系统导出的奖励台账，不是申报" in out
    from lanxi_xl.registry import open_registry

    with open_registry(db) as reg:
        assert [d.file_name for d in reg.declarations(2023)] == ["art-8.xlsx"]
    report = check_file(ledger)
    assert found(report) == [("LEDGER_WORKBOOK", "")] and report.target is None


def test_checked_declaration_carries_claims_and_answers(corpus: dict[str, Path]) -> None:
    decl = checked_declaration(corpus["valid-3"])
    assert decl.valid and decl.credit_code == credit_code(3) and decl.year == 2023
    [claim] = decl.claims
    assert claim.clause_id == "3" and claim.facts["pension_rate"] == 0.9 and claim.facts["office_m2"] == 100


# --- the catalogue ----------------------------------------------------------------------------------------------


def test_every_code_is_documented() -> None:
    doc = (ROOT / "docs" / "checking.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", doc, re.M))
    assert documented == set(CODES)


@pytest.mark.parametrize("sst", [
    b'<sst><si><t>a</t><rPh sb="0" eb="1"><t>A</t></rPh></si></sst>',  # phonetic run
    b'<sst><si foo="1"><t>a</t></si></sst>',  # attributes on <si>
    b"<sst><si ><t>a</t></si></sst>",
    b"<sst><si><t>a</t></si><!-- <si><t>b</t></si> --></sst>",  # a string inside a comment
    b"<sst><si><t>a</t></si><![CDATA[<si><t>b</t></si>]]></sst>",
    b'<x:sst xmlns:x="m"><si><t>a</t></si><x:si><t>b</t></x:si></x:sst>',  # a prefixed entry
    b"<sst><si><t>a</t></si><si></si></sst>",  # an empty entry
    b"<sst><si><t>a</t>" + b"<si><t>b</t>" * 3 + b"</si></sst>",  # entries never closed
])
def test_shared_strings_the_reader_leaves_to_calamine(sst: bytes) -> None:
    # Whatever the value reader cannot read exactly like calamine goes to calamine (the
    # sheet's values are then calamine's); a table read wrongly would shift every string.
    with pytest.raises(intake._Unusual):
        intake._shared_strings(sst)


def test_shared_strings_read_plain_rich_and_again_from_memory() -> None:
    rich = '<r><rPr><b/></rPr><t xml:space="preserve">依据 </t></r><r><t>2022</t></r>'.encode()
    sst = "<sst><si><t>标签</t></si><si>".encode() + rich + b"</si><si><t>a&amp;b</t></si></sst>"
    assert intake._shared_strings(sst) == ["标签", "依据 2022", "a&b"]
    assert rich in intake._SI_TEXTS  # kept for the next file of the batch
    assert intake._shared_strings(sst) == ["标签", "依据 2022", "a&b"]


def test_a_file_over_the_size_limit_is_refused_and_hashed_whole(tmp_path: Path) -> None:
    from lanxi_xl.screen import MAX_FILE_BYTES

    path = tmp_path / "big.xlsx"
    with path.open("wb") as fh:
        fh.write(b"PK\x03\x04")
        fh.truncate(MAX_FILE_BYTES + 10)  # sparse: quick to make
    report = check_file(path)
    assert found(report) == [("FILE_TOO_LARGE", "")] and not report.valid
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


_NS = b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'


@pytest.mark.parametrize("xml", [
    _NS + b'<sheetData><row r="1"><c r="A1"><v>1</v></c><col min="1" max="1"/></row></sheetData></worksheet>',
    _NS + b'<sheetData/><sheetData><row r="1"><c r="A1"><v>1</v></c></row></sheetData></worksheet>',
    _NS + b'<sheetData><row r="1"><c r="A1"><v>1</v></c></row></sheetData><c r="B1"><v>2</v></c></worksheet>',
    _NS + b'<sheetDatax><row r="1"><c r="A1"><v>1</v></c></row></sheetDatax></worksheet>',
], ids=["stray-element", "second-sheetData", "cell-outside", "no-sheetData"])
def test_sheet_xml_calamine_may_read_otherwise_is_left_to_it(xml: bytes) -> None:
    assert intake.scan_and_read(xml, lambda: (None, (), False)) is None


def test_a_cell_with_two_values_is_left_to_calamine() -> None:
    xml = _NS + b'<sheetData><row r="1"><c r="A1"><f>1</f><v>1</v><v>2</v></c></row></sheetData></worksheet>'
    scan, grid, pending = intake.scan_and_read(xml, lambda: (None, (), False))
    assert grid is None and pending is None and scan.formulas == {"A1"}
    plain = _NS + b'<sheetData><row r="1"><c r="A1"><v>1</v></c><c r="B1" s="0"/></row><row r="2"/></sheetData></worksheet>'
    assert intake.scan_and_read(plain, lambda: (None, (), False))[1] == [[1.0]]
