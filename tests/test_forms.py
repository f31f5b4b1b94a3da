"""Form spec, JSON Schemas, generated workbooks, `fill` and read-back (no LibreOffice needed).

The LibreOffice half (native formulas against the engine) is tests/test_templates_lo.py.
Golden files: set LANXI_UPDATE_GOLDEN=1 to rewrite tests/golden/ after an intended change.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import defusedxml.ElementTree as DET
import jsonschema
import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formcases import MODEL, POLICY, common, credit_code, instance_for
from lanxi_xl.errors import InputError
from lanxi_xl.forms import (
    CREDIT_CODE_CHARS,
    Field,
    build_schemas,
    credit_code_check_char,
    facts_for,
    is_credit_code,
    read_instance,
    read_workbook,
    validate_instance,
)
from lanxi_xl.rules import compute
from lanxi_xl.templates import fill, generated_files, stamp

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
TARGETS = ["all", *MODEL.articles]


# --- spec and model --------------------------------------------------------------------


def test_every_clause_fact_has_exactly_one_cell_and_policy_labels() -> None:
    for clause in POLICY.clauses.values():
        art = MODEL.article(clause.article)
        for name, spec in clause.facts.items():
            places = [f for f in art.fields if f.fact == name] + [d for d in art.derived if d.fact == name]
            places += [t for t in art.tables if t.items == name]
            assert len(places) == 1, (clause.id, name)
            place = places[0]
            if not hasattr(place, "columns"):
                assert place.label == spec.label  # derived from the policy, not repeated
        for t in art.tables:
            for c in t.columns:
                if c.fact:
                    item = clause.facts[t.items].items[c.fact]
                    assert (c.label, c.type, c.help) == (item.label, item.type, item.help)


def test_form_spec_does_not_repeat_policy_labels() -> None:
    text = (ROOT / "lanxi_xl" / "forms" / "lanxi-2022.yaml").read_text(encoding="utf-8")
    labels = {s.label for c in POLICY.clauses.values() for s in c.facts.values()}
    labels |= {i.label for c in POLICY.clauses.values() for s in c.facts.values() for i in s.items.values()}
    repeated = sorted(label for label in labels if re.search(rf"label:\s*{re.escape(label)}\s*[,}}\n]", text))
    assert not repeated


def test_cells_do_not_overlap() -> None:
    for art in MODEL.articles.values():
        cells = [f.cell for f in art.fields] + [d.cell for d in art.derived] + [art.estimate_cell]
        cells += list(art.clause_cells.values())
        for t in art.tables:
            cells += [f"{c.cell}{r}" for c in t.columns for r in range(t.first_row, t.last_row + 1)]
        assert len(cells) == len(set(cells)), art.key
    cover = [f.cell for f in MODEL.all_fields]
    assert len(cover) == len(set(cover))


# --- GB 32100-2015 ---------------------------------------------------------------------


def test_credit_code_known_and_mutated() -> None:
    # A published example of GB 32100-2015 (check character computed by hand: Σ = 1048, 31 - 1048 mod 31 = 6).
    assert credit_code_check_char("91350100M000100Y4") == "3"
    assert is_credit_code("91350100M000100Y43")
    code = credit_code(7)
    assert is_credit_code(code)
    for i in range(18):
        for ch in "0A9Y":
            if ch != code[i]:
                mutated = code[:i] + ch + code[i + 1:]
                assert not is_credit_code(mutated), mutated
    assert not is_credit_code(code.lower()) and not is_credit_code(code[:17]) and not is_credit_code(None)


@given(st.text(alphabet=CREDIT_CODE_CHARS, min_size=17, max_size=17))
def test_credit_code_single_substitution_is_detected(body: str) -> None:
    code = body + credit_code_check_char(body)
    pos = len(body) // 2
    other = CREDIT_CODE_CHARS[(CREDIT_CODE_CHARS.index(body[pos]) + 1) % 31]
    mutated = body[:pos] + other + body[pos + 1:]
    assert credit_code_check_char(mutated) != code[17]  # a weight prime to 31 catches any one change


# --- schemas -----------------------------------------------------------------------------


def test_every_schema_passes_the_draft_2020_12_meta_schema() -> None:
    schemas = build_schemas(MODEL)
    assert set(schemas) == {"common.json", "declaration.json", *(f"art-{k}.json" for k in MODEL.articles)}
    for name, schema in schemas.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"https://lanxi-xl.invalid/schemas/lanxi-2022/{MODEL.template_version}/{name}"


@pytest.mark.parametrize(
    ("mutate", "pointer", "words"),
    [
        (lambda d: d["common"].update(credit_code=d["common"]["credit_code"][:17] + "X"), "/common/credit_code", "校验位"),
        (lambda d: d["common"].update(mobile="1380000000"), "/common/mobile", "格式"),
        (lambda d: d["common"].update(year=2021), "/common/year", "不小于 2022"),
        (lambda d: d["common"]["attestations"].update(pension_rate=85), "/common/attestations/pension_rate", "不大于 1"),
        (lambda d: d["common"]["attestations"].pop("dishonest"), "/common/attestations/dishonest", "缺少"),
        (lambda d: d["articles"]["3"]["leases"][0].update(months=13), "/articles/3/leases/0/months", "不大于 12"),
        (lambda d: d["articles"]["3"]["leases"][0].update(kind="办公"), "/articles/3/leases/0/kind", "office"),
        (lambda d: d["articles"]["3"].update(online_sales="300万"), "/articles/3/online_sales", "应为数字"),
        (lambda d: d["articles"]["3"].update(salse=1), "/articles/3", "未知的申报项“salse”"),
        (lambda d: d["articles"]["3"].update(leases=[]), "/articles/3/leases", "至少要填写1行"),
        (lambda d: d.update(template_version="2021.9"), "/template_version", "模板或政策版本不符"),
        (lambda d: d["common"].update(enterprise_name="a\x01b"), "/common/enterprise_name", "格式"),
    ],
)
def test_invalid_instances_are_named_in_chinese(mutate: Any, pointer: str, words: str) -> None:
    doc = instance_for("3", {"office_m2": 100, "office_rent": 15000, "storage_m2": 0, "storage_rent": 0,
                             "online_sales": 1000000, "months": 12})
    assert validate_instance(MODEL, "3", doc) == []
    mutate(doc)
    problems = validate_instance(MODEL, "3", doc)
    assert any(p.pointer == pointer and words in p.message for p in problems), problems


def test_multi_clause_articles_declare_either_part() -> None:
    doc = instance_for("11.1", {"usd_exports": 300000, "build_cost": 1000000, "years_operating": 2})
    assert validate_instance(MODEL, "11", doc) == []
    assert facts_for("11.1", doc)["build_cost"] == 1000000
    with pytest.raises(InputError) as info:
        facts_for("11.2", doc)
    assert info.value.code == "CLAUSE_NOT_DECLARED"
    del doc["articles"]["11"]["years_operating"]
    messages = [p.message for p in validate_instance(MODEL, "11", doc)]
    assert any("还需填写「运营年限」" in m for m in messages), messages
    del doc["articles"]["11"]["usd_exports"]
    messages = [p.message for p in validate_instance(MODEL, "11", doc)]
    assert any(m.startswith("至少申报一款") for m in messages), messages


def test_table_aggregation_follows_the_documented_rules() -> None:
    doc = instance_for("3", {"office_m2": 1, "office_rent": 1, "storage_m2": 1, "storage_rent": 1,
                             "online_sales": 3000000, "months": 1})
    doc["articles"]["3"]["leases"] = [
        {"kind": "office", "area_m2": 60, "months": 12, "rent_paid": 18000},
        {"kind": "office", "area_m2": 40, "months": 6, "rent_paid": 12000},
        {"kind": "storage", "area_m2": 200, "months": 9, "rent_paid": 20000},
    ]
    assert validate_instance(MODEL, "3", doc) == []
    facts = facts_for("3", doc)
    assert (facts["office_m2"], facts["office_rent"], facts["storage_m2"], facts["storage_rent"], facts["months"]) == (
        100, 30000, 200, 20000, 12)
    doc = instance_for("11.2", {"usd_sales": 150000, "storage_cost": 100000})
    doc["articles"]["11"]["cost_items"].append({"category": "logistics", "amount": 999999})
    doc["articles"]["11"]["cost_items"].append({"category": "equipment", "amount": 5})
    facts = facts_for("11.2", doc)
    assert facts["storage_cost"] == 100000  # logistics never counts; equipment is build cost
    assert compute("11.2", facts, 2023).amount == 20000
    doc = instance_for("7", {"events": [{"cost": 50000}, {"cost": 10000, "prefiled": False}]})
    assert facts_for("7", doc)["events"] == [{"cost": 50000}, {"cost": 10000, "prefiled": False}]
    doc["common"]["attestations"]["dishonest"] = True
    assert compute("7", facts_for("7", doc), 2023).status == "not_applicable"


# --- fill and read back --------------------------------------------------------------------


def _text(f: Field) -> st.SearchStrategy[str]:
    if f.pattern:
        return st.from_regex(f.pattern, fullmatch=True)
    chars = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")) | st.sampled_from("\t\n")
    plain = st.text(chars, min_size=1, max_size=min(f.max_length or 40, 40))
    return st.one_of(plain, st.just("=SUM(1,2)"), st.just("+86 571"), st.just("  空格  "), st.just("007"))


def _value(f: Field) -> st.SearchStrategy[Any]:
    if f.type in ("money", "usd", "number"):
        return st.decimals(min_value=0, max_value=10**9, places=2).map(lambda d: int(d) if d == int(d) else float(d))
    if f.type == "rate":
        return st.decimals(min_value=0, max_value=1, places=4).map(float)
    if f.type == "integer":
        return st.integers(int(f.minimum or 0), int(f.maximum if f.maximum is not None else 10**6))
    if f.type == "year":
        return st.integers(POLICY.first_year, 2099)
    if f.type == "bool":
        return st.booleans()
    if f.type == "choice":
        return st.sampled_from([o.key for o in f.options])
    if f.type == "date":
        return st.dates(dt.date(2000, 1, 1), dt.date(2099, 12, 31)).map(dt.date.isoformat)
    if f.type == "credit_code":
        return st.text(CREDIT_CODE_CHARS, min_size=2, max_size=2).flatmap(
            lambda head: st.from_regex(r"[0-9]{6}", fullmatch=True).flatmap(
                lambda mid: st.text(CREDIT_CODE_CHARS, min_size=9, max_size=9).map(
                    lambda tail: head + mid + tail + credit_code_check_char(head + mid + tail))))
    if f.type == "mobile":
        return st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
    return _text(f)


@st.composite
def _object(draw: Any, fields: tuple[Field, ...], required: set[str], never: set[str] = set()) -> dict[str, Any]:
    out = {}
    for f in fields:
        if f.key in never:
            continue
        if f.key in required or draw(st.booleans()):
            out[f.key] = draw(_value(f))
    return out


@st.composite
def instances(draw: Any, target: str) -> dict[str, Any]:
    doc_common = draw(_object(MODEL.common, {f.key for f in MODEL.common}))
    doc_common["attestations"] = draw(_object(MODEL.attestations, {f.key for f in MODEL.attestations}))
    keys = [target] if target != "all" else draw(st.lists(st.sampled_from(list(MODEL.articles)), min_size=1,
                                                          max_size=4, unique=True))
    articles = {}
    for key in keys:
        art = MODEL.articles[key]
        if len(art.clauses) > 1:
            chosen = draw(st.lists(st.sampled_from(art.clauses), min_size=1, unique=True))
            required = {f.key for c in chosen for f in art.key_fields(c)}
            never = {f.key for c in art.clauses if c not in chosen for f in art.key_fields(c)}
        else:
            required, never = {f.key for f in art.fields if f.required}, set()
        data = draw(_object(art.fields, required, never))
        for t in art.tables:
            data[t.key] = draw(st.lists(_object(t.columns, {c.key for c in t.columns if c.required}),
                                        min_size=t.min_items, max_size=t.rows))
        articles[key] = data
    return {"policy": POLICY.key, "template_version": MODEL.template_version, "common": doc_common,
            "articles": articles}


@pytest.mark.parametrize("target", TARGETS)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
def test_fill_then_read_back_gives_the_same_instance(target: str, data: Any, tmp_path: Path) -> None:
    doc = data.draw(instances(target))
    assert validate_instance(MODEL, target, doc) == [], doc
    path = fill(target, doc, tmp_path / "filled.xlsx")
    assert read_instance(path) == doc


def test_fill_writes_formula_looking_text_as_text(tmp_path: Path) -> None:
    doc = instance_for("8", {"usd_sales": 1200000})
    doc["common"]["enterprise_name"] = '=HYPERLINK("http://example.invalid","点我")'
    doc["common"]["contact"] = "=1+1"
    path = fill("8", doc, tmp_path / "x.xlsx")
    ws = openpyxl.load_workbook(path)[MODEL.cover_sheet]
    for key in ("enterprise_name", "contact"):
        cell = ws[next(f.cell for f in MODEL.common if f.key == key)]
        assert cell.data_type == "s" and cell.value.startswith("=")
    with zipfile.ZipFile(path) as z:
        sheet1 = z.read("xl/worksheets/sheet1.xml").decode("utf-8")
    assert "HYPERLINK" in sheet1 and not re.search(r"<f>[^<]*HYPERLINK", sheet1)  # a string, never a <f> formula
    assert not re.search(r"<f>1\+1", sheet1)


def test_fill_refuses_invalid_data_and_writes_nothing(tmp_path: Path) -> None:
    doc = instance_for("8", {"usd_sales": 1200000})
    doc["articles"]["8"]["usd_sales"] = "120万"
    out = tmp_path / "out.xlsx"
    with pytest.raises(InputError) as info:
        fill("8", doc, out)
    assert info.value.code == "INSTANCE_INVALID"
    assert "/articles/8/usd_sales" in info.value.message and "应为数字" in info.value.message
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(InputError) as info:
        fill("99", doc, out)
    assert info.value.code == "UNKNOWN_ARTICLE"


def test_read_workbook_maps_pointers_to_cells(tmp_path: Path) -> None:
    doc = instance_for("7", {"events": [{"cost": 1}, {"cost": 2}]})
    path = fill("7", doc, tmp_path / "x.xlsx")
    wb = openpyxl.load_workbook(path)
    ws = wb[MODEL.article("7").sheet]
    # A gap in the table: rows are read in order, pointers keep pointing at their cells.
    t = MODEL.article("7").table("events")
    for c in t.columns:
        ws[t.cell(3, c.key)].value = ws[t.cell(1, c.key)].value
        ws[t.cell(1, c.key)].value = None
    wb.save(path)
    reading = read_workbook(path)
    assert reading.instance["articles"]["7"]["events"][1]["cost"] == 2
    assert reading.cells["/articles/7/events/1/cost"] == (t.sheet, t.cell(3, "cost"))
    assert reading.cells["/common/credit_code"][0] == MODEL.cover_sheet
    other = tmp_path / "plain.xlsx"
    openpyxl.Workbook().save(other)
    with pytest.raises(InputError) as info:
        read_instance(other)
    assert info.value.code == "NOT_A_TEMPLATE"


# --- the generated workbooks ------------------------------------------------------------------


@pytest.fixture(scope="module")
def declaration() -> openpyxl.Workbook:
    return openpyxl.load_workbook(ROOT / "templates" / "declaration.xlsx")


def test_workbook_stamp_names_and_protection(declaration: openpyxl.Workbook) -> None:
    wb = declaration
    assert wb.sheetnames == [MODEL.cover_sheet, *(a.sheet for a in MODEL.articles.values()), "_lists", "_meta"]
    assert wb["_lists"].sheet_state == "hidden" and wb["_meta"].sheet_state == "veryHidden"
    props = {p.name: p.value for p in wb.custom_doc_props.props}
    assert props == {f"lanxi.{k}": v for k, v in stamp(MODEL, "all").items()}
    assert props["lanxi.schema_id"].endswith(f"/lanxi-2022/{MODEL.template_version}/declaration.json")
    assert wb.security.lockStructure
    cover = wb[MODEL.cover_sheet]
    for f in MODEL.all_fields:
        assert cover.defined_names[f.name].attr_text == f"'{MODEL.cover_sheet}'!${f.cell[0]}${f.cell[1:]}"
        assert cover[f.cell].protection.locked is False
    for art in MODEL.articles.values():
        ws = wb[art.sheet]
        assert ws.protection.sheet and ws.protection.password is None  # guidance, not security
        assert ws.defined_names["award_estimate"].attr_text == f"'{art.sheet}'!${art.estimate_cell[0]}${art.estimate_cell[1:]}"
        assert ws[art.estimate_cell].protection.locked and str(ws[art.estimate_cell].value).startswith("=IF(")
        for f in art.fields:
            assert f.name in ws.defined_names and ws[f.cell].protection.locked is False
        for t in art.tables:
            for c in t.columns:
                assert ws[t.cell(t.rows - 1, c.key)].protection.locked is False
        assert int(ws.page_setup.paperSize) == 9 and ws.sheet_properties.pageSetUpPr.fitToPage
        formulas = [c.value for row in ws.iter_rows() for c in row if isinstance(c.value, str) and c.value.startswith("=")]
        used = {m for f in formulas for m in re.findall(r"([A-Z]+)\(", f)}
        assert used <= {"IF", "MIN", "MAX", "SUM", "ROUND", "AND", "OR", "COUNTA"}, used


def test_dropdowns_come_from_the_hidden_list_sheet(declaration: openpyxl.Workbook) -> None:
    lists = declaration["_lists"]
    for ws in declaration.worksheets[:-2]:
        for dv in ws.data_validations.dataValidation:
            assert dv.showErrorMessage and dv.errorStyle == "stop" and dv.error
            if dv.type == "list":
                assert dv.formula1.startswith("'_lists'!$")
                col = dv.formula1.split("!$")[1][0]
                assert [c.value for c in lists[col] if c.value] in (["是", "否"], *[
                    [o.label for o in f.options] for f in _all_choice_fields()])


def _all_choice_fields() -> list[Field]:
    out = [f for f in MODEL.all_fields if f.type == "choice"]
    for art in MODEL.articles.values():
        out += [f for f in art.fields if f.type == "choice"]
        out += [c for t in art.tables for c in t.columns if c.type == "choice"]
    return out


# --- committed files and golden XML -------------------------------------------------------------


def test_committed_schemas_and_templates_match_the_generator() -> None:
    generated = generated_files(MODEL)
    stale = [rel for rel, data in generated.items() if not (ROOT / rel).is_file() or (ROOT / rel).read_bytes() != data]
    assert not stale, f"run `lanxi-xl templates` and commit: {stale}"
    assert generated == generated_files(MODEL)  # deterministic within a run, too


def _parts(data: bytes) -> dict[str, str]:
    """The XML that golden files pin: validations, protection, names, stamp, print setup."""
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    ET.register_namespace("", ns["m"])
    out: dict[str, str] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        wb = DET.fromstring(z.read("xl/workbook.xml"))
        out["workbook"] = "".join(_pretty(wb.find(t, ns)) for t in ("m:sheets", "m:workbookProtection", "m:definedNames"))
        out["custom"] = _pretty(DET.fromstring(z.read("docProps/custom.xml")))
        sheets = []
        for i, s in enumerate(wb.find("m:sheets", ns)):
            sheet = DET.fromstring(z.read(f"xl/worksheets/sheet{i + 1}.xml"))
            sheets.append(f"<!-- sheet{i + 1}.xml: {s.get('name')} -->\n")
            for tag in ("sheetPr", "sheetProtection", "dataValidations", "pageMargins", "pageSetup"):
                el = sheet.find(f"m:{tag}", ns)
                if el is not None:
                    sheets.append(_pretty(el))
        out["worksheets"] = "".join(sheets)
    return out


def _pretty(el: Any) -> str:
    ET.indent(el)
    return ET.tostring(el, encoding="unicode") + "\n"


@pytest.mark.parametrize("name", ["declaration.xlsx", "art-7.xlsx", "calculator.xlsx"])
def test_golden_xml_parts(name: str) -> None:
    parts = _parts(generated_files(MODEL)[f"templates/{name}"])
    folder = GOLDEN / name.removesuffix(".xlsx")
    if os.environ.get("LANXI_UPDATE_GOLDEN"):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for part, text in parts.items():
            (folder / f"{part}.xml").write_text(text, encoding="utf-8")
    stored = {p.stem: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.xml"))}
    assert set(stored) == set(parts), "golden parts differ; LANXI_UPDATE_GOLDEN=1 rewrites them"
    for part, text in parts.items():
        assert text == stored[part], f"{name}: {part}.xml differs from tests/golden (LANXI_UPDATE_GOLDEN=1 to accept)"


# --- the command line -------------------------------------------------------------------------

EXE = shutil.which("lanxi-xl")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [EXE, *args] if EXE else [sys.executable, "-m", "lanxi_xl.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=120, cwd=ROOT)


def test_cli_templates_and_fill(tmp_path: Path) -> None:
    out = run("templates", "--out", str(tmp_path / "gen"))
    assert out.returncode == 0, out.stderr
    for rel in ("templates/declaration.xlsx", "templates/art-8.xlsx", "templates/calculator.xlsx",
                f"schemas/lanxi-2022/{MODEL.template_version}/art-8.json"):
        assert (tmp_path / "gen" / rel).read_bytes() == (ROOT / rel).read_bytes(), rel

    data = tmp_path / "data.json"
    data.write_text(json.dumps(instance_for("8", {"usd_sales": 1200000}), ensure_ascii=False), encoding="utf-8")
    out = run("fill", "8", str(data), "-o", str(tmp_path / "申报表.xlsx"))
    assert out.returncode == 0, out.stderr
    assert read_instance(tmp_path / "申报表.xlsx") == json.loads(data.read_text(encoding="utf-8"))

    data.write_text(json.dumps({"common": common(), "articles": {"8": {"usd_sales": -1}}}), encoding="utf-8")
    out = run("fill", "8", str(data), "-o", str(tmp_path / "bad.xlsx"))
    assert out.returncode == 2 and "INSTANCE_INVALID" in out.stderr and "应不小于 0" in out.stderr
    assert not (tmp_path / "bad.xlsx").exists()
    data.write_text("{not json", encoding="utf-8")
    out = run("fill", "8", str(data), "-o", str(tmp_path / "bad.xlsx"))
    assert out.returncode == 2 and "BAD_JSON" in out.stderr
