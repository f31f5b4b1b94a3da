"""The templates' native formulas against the engine, recalculated in real LibreOffice.

Every hand-worked case of tests/cases/lanxi-2022.yaml (at and around every boundary
and cap) is written into its article's template with `fill`, all files are
recalculated in ONE headless LibreOffice run (fresh profile, OOXMLRecalcMode=0), and
the cell named `award_estimate` must equal what the engine pays, to the fen. The
calculator workbook and the combined declaration are checked the same way, and a
filled declaration saved by LibreOffice must read back to the same JSON.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from formcases import MODEL, POLICY, award_cases, common, instance_for, json_value
from lanxi_xl.errors import InputError
from lanxi_xl.facts import disqualification_specs
from lanxi_xl.forms import declared_clauses, facts_for, read_instance, read_workbook
from lanxi_xl.money import FEN
from lanxi_xl.rules import compute
from lanxi_xl.templates import (
    CALC_SHEET,
    build_calculator,
    build_workbook,
    calculator_layout,
    fill,
    stamp,
    workbook_bytes,
)

pytestmark = pytest.mark.libreoffice

CASES = [c for c in award_cases() if not (c["clause"] == "7" and not c["facts"].get("events"))]
DQ = disqualification_specs(POLICY)


def expected_estimate(instance: Mapping[str, Any], article: str) -> Decimal | None:
    """What the engine pays for one article of a declaration (None: nothing declared)."""
    data = instance["articles"].get(article)
    if data is None:
        return None
    clauses = declared_clauses(MODEL, article, data)
    if not clauses:
        return None
    year = instance["common"]["year"]
    return sum((compute(c, facts_for(c, instance), year).amount for c in clauses), Decimal(0))


def as_fen(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    assert isinstance(value, (int, float)) and not isinstance(value, bool), value
    return Decimal(repr(float(value))).quantize(FEN)


def calculator_inputs(cases: list[dict[str, Any]]) -> openpyxl.Workbook:
    """The calculator with one case per clause typed into its row (as a person would)."""
    wb = openpyxl.load_workbook(io.BytesIO(workbook_bytes(build_calculator(MODEL))))
    ws = wb[CALC_SHEET]
    dq_cells, rows = calculator_layout(MODEL)
    by_clause = {r.clause: r for r in rows}
    for case in cases:
        clause = POLICY.clause(case["clause"])
        row = by_clause[clause.id]
        for name, raw in case["facts"].items():
            if name in DQ:
                ws[dq_cells[name]] = cell_value(DQ[name], raw)
                continue
            spec = clause.facts[name]
            if spec.type == "items":
                for i, entry in enumerate(raw):
                    entry = entry if isinstance(entry, Mapping) else {next(iter(spec.items)): entry}
                    for k, v in entry.items():
                        ws[row.cells[f"{name}[{i}].{k}"]] = cell_value(spec.items[k], v)
            else:
                ws[row.cells[name]] = cell_value(spec, raw)
    return wb


def cell_value(spec: Any, raw: Any) -> Any:
    value = json_value(spec, raw)
    if spec.type == "bool":
        return "是" if value else "否"
    if spec.type == "choice":
        return next(c.label for c in spec.choices if c.key == value)
    return value


def signature(case: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a case puts in the common part: the year and any art. 15 answers."""
    return case.get("year", 2023), tuple(sorted((k, str(v)) for k, v in case["facts"].items() if k in DQ))


PLAIN = (2023, ())


@pytest.fixture(scope="module")
def recalculated(lo_recalc, tmp_path_factory) -> dict[str, Any]:
    """Fill everything, recalculate all of it in one soffice run.

    Cases with the default common part share combined declarations (the k-th case of
    every article in workbook k, so each sheet is checked against the engine); cases
    with their own year or art. 15 answers get a single-article workbook each, and so
    does the first case of every article (every per-article template is exercised).
    """
    src = tmp_path_factory.mktemp("filled")
    files: dict[str, Any] = {}
    plan: dict[str, Any] = {"cases": [], "combined": [], "calc": [], "codes": []}

    by_article: dict[str, list[dict[str, Any]]] = {}
    for c in CASES:
        if signature(c) == PLAIN:
            by_article.setdefault(str(POLICY.clause(c["clause"]).article), []).append(c)
    depth = max(len(v) for v in by_article.values())
    for k in range(depth):
        instance = {"policy": POLICY.key, "template_version": MODEL.template_version, "common": common(),
                    "articles": {}}
        cases = []
        for article, group in sorted(by_article.items(), key=lambda kv: int(kv[0])):
            if k < len(group):
                case = group[k]
                instance["articles"][article] = instance_for(case["clause"], case["facts"])["articles"][article]
                cases.append(case)
        name = f"combined{k:02d}"
        files[name] = fill("all", instance, src / f"{name}.xlsx")
        plan["combined"].append((name, instance, cases))

    singles = [c for c in CASES if signature(c) != PLAIN] + [group[0] for group in by_article.values()]
    for n, case in enumerate(singles):
        instance = instance_for(case["clause"], case["facts"], case.get("year", 2023))
        article = str(POLICY.clause(case["clause"]).article)
        name = f"single{n:02d}"
        files[name] = fill(article, instance, src / f"{name}.xlsx")
        plan["cases"].append((name, case, article, instance))

    # The calculator: the k-th case of every clause in one workbook; art. 15 cases alone.
    by_clause: dict[str, list[dict[str, Any]]] = {}
    for c in CASES:
        if signature(c) == PLAIN:
            by_clause.setdefault(c["clause"], []).append(c)
    depth = max(len(v) for v in by_clause.values())
    batches = [[v[k] for v in by_clause.values() if k < len(v)] for k in range(depth)]
    batches += [[c] for c in CASES if signature(c)[1]]
    for k, batch in enumerate(batches):
        name = f"calc{k:02d}"
        files[name] = calculator_inputs(batch)
        plan["calc"].append((name, batch))

    # The credit-code check cell, typed directly (fill would refuse the bad ones).
    good = common()["credit_code"]
    wrong = good[:17] + ("0" if good[17] != "0" else "1")
    codes = {"good": good, "wrong": wrong, "lower": good[:9] + good[9].lower() + good[10:],
             "short": good[:17], "bad_char": good[:10] + "I" + good[11:]}
    assert codes["lower"] != good
    for label, code in codes.items():
        wb = openpyxl.load_workbook(io.BytesIO(workbook_bytes(build_workbook(MODEL, "8"))))
        cell = next(f.cell for f in MODEL.common if f.type == "credit_code")
        wb[MODEL.cover_sheet][cell] = code
        name = f"code_{label}"
        files[name] = wb
        plan["codes"].append((name, label, code, cell))

    return {"paths": lo_recalc(files), "plan": plan}


def estimate(book: Path | openpyxl.Workbook, sheet: str) -> Any:
    """The value of the sheet's `award_estimate` (a sheet-scoped defined name)."""
    wb = book if isinstance(book, openpyxl.Workbook) else openpyxl.load_workbook(book, data_only=True)
    ws = wb[sheet]
    dn = ws.defined_names["award_estimate"]
    (title, ref), = list(dn.destinations)
    return wb[title.strip("'")][ref.replace("$", "")].value


def test_every_hand_worked_case_estimates_what_the_engine_pays(recalculated):
    """Combined declarations: every article sheet, every summary line, against the engine."""
    mismatches = []
    seen = 0
    for name, instance, cases in recalculated["plan"]["combined"]:
        path = recalculated["paths"][name]
        wb = openpyxl.load_workbook(path, data_only=True)
        cover = wb[MODEL.cover_sheet]
        first = MODEL.summary_first_row + 2
        summary = {cover[f"A{r}"].value: cover[f"C{r}"].value for r in range(first, first + len(MODEL.articles))}
        for article, art in MODEL.articles.items():
            want = expected_estimate(instance, article)
            got = as_fen(estimate(wb, art.sheet))
            if got != want or as_fen(summary[f"第{article}条"]) != want:
                mismatches.append((name, article, str(got), str(want)))
        for case in cases:
            article = str(POLICY.clause(case["clause"]).article)
            # the form's aggregation keeps the case's facts: the engine pays the same
            assert expected_estimate(instance, article) == compute(case["clause"], case["facts"], 2023).amount, case
            seen += 1
    assert not mismatches, mismatches
    singles = {p[1]["clause"] for p in recalculated["plan"]["cases"]}
    assert seen + len(recalculated["plan"]["cases"]) >= len(CASES) and singles >= set(POLICY.clauses) - {"4.2", "11.2"}


def test_single_article_templates_estimate_what_the_engine_pays(recalculated):
    mismatches = []
    for name, case, article, instance in recalculated["plan"]["cases"]:
        got = as_fen(estimate(recalculated["paths"][name], MODEL.article(article).sheet))
        want = expected_estimate(instance, article)
        assert want == compute(case["clause"], case["facts"], case.get("year", 2023)).amount, case
        if got != want:
            mismatches.append((case["clause"], case["facts"], str(got), str(want)))
    assert not mismatches, mismatches


def test_estimate_cells_hold_numbers_to_the_fen(recalculated):
    name, case, article, _ = next(p for p in recalculated["plan"]["cases"] if p[1]["clause"] == "9")
    value = estimate(recalculated["paths"][name], MODEL.article(article).sheet)
    assert isinstance(value, (int, float)) and round(value, 2) == value


def test_combined_declaration_reads_back_equal(recalculated):
    for name, instance, _ in recalculated["plan"]["combined"][:5]:
        assert read_instance(recalculated["paths"][name]) == instance, name


def test_art15_answer_zeroes_every_estimate(recalculated):
    hits = [p for p in recalculated["plan"]["cases"] if set(p[1]["facts"]) & set(DQ)]
    assert hits
    for name, case, article, instance in hits:
        wb = openpyxl.load_workbook(recalculated["paths"][name], data_only=True)
        art = MODEL.article(article)
        status = wb[art.sheet][art.status_cell].value
        disqualified = compute(case["clause"], case["facts"], 2023).status == "not_applicable"
        assert bool(status) == disqualified, case
        if disqualified:
            assert "第15条" in status and estimate(recalculated["paths"][name], art.sheet) == 0


def test_calculator_agrees_with_the_engine(recalculated):
    _, rows = calculator_layout(MODEL)
    award_cell = {r.clause: r.award_cell for r in rows}
    mismatches = []
    for name, batch in recalculated["plan"]["calc"]:
        ws = openpyxl.load_workbook(recalculated["paths"][name], data_only=True)[CALC_SHEET]
        for case in batch:
            got = as_fen(ws[award_cell[case["clause"]]].value)
            want = compute(case["clause"], case["facts"], 2023).amount
            if got != want:
                mismatches.append((case["clause"], case["facts"], str(got), str(want)))
    assert not mismatches, mismatches


def test_credit_code_check_cell_matches_python(recalculated):
    shown = {}
    for name, label, code, cell in recalculated["plan"]["codes"]:
        ws = openpyxl.load_workbook(recalculated["paths"][name], data_only=True)[MODEL.cover_sheet]
        shown[label] = ws["D" + cell[1:]].value
    assert shown["good"].startswith("✓")
    assert shown["wrong"] == "✗ 校验位错误"
    assert shown["short"] == "✗ 应为18位"
    assert shown["bad_char"] == "✗ 含无效字符"
    assert shown["lower"].startswith("✗")  # GB 32100 letters are upper case


# --- saved by LibreOffice, read back ---------------------------------------------------


@pytest.fixture(scope="module")
def saved_by_libreoffice(lo_roundtrip, tmp_path_factory) -> dict[str, Any]:
    src = tmp_path_factory.mktemp("to-save")
    instances = {
        "art3": instance_for("3", {"office_m2": 100, "office_rent": 30000, "storage_m2": 200, "storage_rent": 20000,
                                   "online_sales": 3000000, "months": 12}),
        "art7": instance_for("7", {"events": [{"cost": 50000}, {"cost": 10000, "prefiled": False}]}),
        "art11": instance_for("11.2", {"usd_sales": 150000, "storage_cost": 100000}),
    }
    instances["art7"]["common"]["enterprise_name"] = "=HYPERLINK(\"http://example.invalid\",\"点我\")"
    files = {name: fill(name[3:], inst, src / f"{name}.xlsx") for name, inst in instances.items()}
    return {"paths": lo_roundtrip(files), "instances": instances}


def test_libreoffice_saved_declaration_reads_back_equal(saved_by_libreoffice):
    for name, instance in saved_by_libreoffice["instances"].items():
        assert read_instance(saved_by_libreoffice["paths"][name]) == instance, name


def test_libreoffice_keeps_the_stamp_names_and_estimate(saved_by_libreoffice):
    path = saved_by_libreoffice["paths"]["art3"]
    reading = read_workbook(path)
    assert dict(reading.stamp) == stamp(MODEL, "3")
    wb = openpyxl.load_workbook(path)
    props = {p.name: p.value for p in wb.custom_doc_props.props}
    assert props["lanxi.schema_id"] == MODEL.schema_id("art-3")
    assert props["lanxi.template_version"] == MODEL.template_version
    ws = wb[MODEL.article("3").sheet]
    assert "award_estimate" in ws.defined_names and "lx_online_sales" in ws.defined_names
    assert ws.protection.sheet and ws["C7"].protection.locked is False and ws["B7"].protection.locked
    assert wb[MODEL.cover_sheet].data_validations.dataValidation  # validations survive
    assert as_fen(estimate(path, ws.title)) == Decimal("26400.00")  # LibreOffice computed it on load


def test_formula_text_from_data_stays_text_after_libreoffice(saved_by_libreoffice):
    path = saved_by_libreoffice["paths"]["art7"]
    cell = next(f.cell for f in MODEL.common if f.key == "enterprise_name")
    ws = openpyxl.load_workbook(path)[MODEL.cover_sheet]
    assert ws[cell].data_type == "s" and ws[cell].value.startswith("=HYPERLINK")


def test_reading_a_calculator_is_refused(recalculated):
    name = recalculated["plan"]["calc"][0][0]
    with pytest.raises(InputError) as info:
        read_instance(recalculated["paths"][name])
    assert info.value.code == "NOT_A_DECLARATION"
