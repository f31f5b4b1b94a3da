"""Compiled native formulas agree with the engine to the fen, recalculated in real LibreOffice."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import yaml
from openpyxl.utils import get_column_letter

from lanxi_xl.facts import is_blank
from lanxi_xl.formulas import award_expression, award_formula, disqualified_formula, item_formula
from lanxi_xl.policy import policy_for_year
from lanxi_xl.rules import compute

POLICY = policy_for_year(2023)
CASES = yaml.safe_load((Path(__file__).parent / "cases" / "lanxi-2022.yaml").read_text(encoding="utf-8"))
MAX_ITEMS = 8
DQ = [d.name for d in POLICY.disqualifications]


def cell_value(spec: Any, raw: Any) -> Any:
    """What a person would have in the cell: labels for choices, 是/否, fractions, numbers."""
    if spec.type == "choice":
        key = next(c.key for c in spec.choices if str(raw).strip() in {c.key, c.label, *c.aliases})
        return next(c.label for c in spec.choices if c.key == key)
    if spec.type == "bool":
        return "是" if raw in (True, 1, "是", "true") else "否"
    if isinstance(raw, str) and raw.endswith("%"):
        return float(Decimal(raw[:-1]) / 100)
    return float(raw) if isinstance(raw, (int, float)) else raw


def random_cases(seed: int = 20221) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for cid, clause in POLICY.clauses.items():
        for _ in range(12):
            facts: dict[str, Any] = {}
            for name, spec in clause.facts.items():
                if spec.type == "choice":
                    facts[name] = rng.choice(spec.choices).key
                elif spec.type == "bool":
                    facts[name] = rng.random() < 0.8
                elif spec.type == "integer":
                    facts[name] = rng.randint(int(spec.min or 0), int(spec.max or 12))
                elif spec.type == "rate":
                    facts[name] = round(rng.random(), 4)
                elif spec.type == "items":
                    facts[name] = [{"cost": round(rng.uniform(0, 60000), 2), "prefiled": rng.random() < 0.8}
                                   for _ in range(rng.randint(0, MAX_ITEMS))]
                else:
                    facts[name] = round(rng.uniform(0, 1) ** 3 * 3e7, 2)
            out.append({"clause": cid, "facts": facts})
    return out


ALL = [c for c in CASES if "error" not in c and c.get("year", 2023) == 2023] + random_cases()


def build() -> tuple[openpyxl.Workbook, list[tuple[str, int, dict[str, Any]]]]:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    where: list[tuple[str, int, dict[str, Any]]] = []
    for cid, clause in POLICY.clauses.items():
        ws = wb.create_sheet(f"c{cid}")
        cols: dict[str, int] = {}
        col = 1
        for name, spec in clause.facts.items():
            if spec.type == "items":
                for i in range(MAX_ITEMS):
                    for item in (*spec.items, "value"):
                        cols[f"{name}.{i}.{item}"] = col
                        col += 1
            else:
                cols[name] = col
                col += 1
        for name in DQ:
            cols[name] = col
            col += 1
        award_col = col
        for n, case in enumerate(c for c in ALL if c["clause"] == cid):
            row = n + 1
            facts = case["facts"]

            def ref(name: str, row: int = row) -> str:
                return f"{get_column_letter(cols[name])}{row}"

            for name, spec in clause.facts.items():
                raw = facts.get(name)
                if spec.type == "items":
                    rows = raw or []
                    for i in range(MAX_ITEMS):
                        entry = rows[i] if i < len(rows) else None
                        if isinstance(entry, (int, float)):
                            entry = {"cost": entry}
                        for item, ispec in spec.items.items():
                            value = None if entry is None else entry.get(item, ispec.default)
                            if value is not None:
                                ws[ref(f"{name}.{i}.{item}")] = cell_value(ispec, value)
                        formula = item_formula(clause, name, lambda f, i=i: ref(f"{name}.{i}.{f}"))
                        ws[ref(f"{name}.{i}.value")] = "=" + formula
                elif not is_blank(raw):
                    ws[ref(name)] = cell_value(spec, raw)
            for name in DQ:
                if name in facts:
                    spec = next(d for d in POLICY.disqualifications if d.name == name)
                    ws[ref(name)] = cell_value(spec, facts[name])

            def total(items: str, row: int = row) -> str:
                cells = [ref(f"{items}.{i}.value") for i in range(MAX_ITEMS)]
                return "SUM(" + ",".join(cells) + ")"

            expr = award_expression(clause, ref, total)
            ws.cell(row, award_col, f"=IF({disqualified_formula(POLICY, ref)},0,{expr})")
            where.append((ws.title, row, case))
            ws.cell(row, award_col + 1, award_formula(clause, ref, total))
    # The estimate stays empty while a required figure is blank (no misleading 0).
    blank = wb.create_sheet("blank")
    blank["A1"], blank["B1"], blank["C1"] = 25, 0, 0.9
    refs = {"land_mu": "A1", "floor_m2": "B1", "occupancy": "C1", "sales": "D1"}
    blank["E1"] = award_formula(POLICY.clauses["1"], refs.__getitem__)
    blank["A2"], blank["B2"], blank["C2"], blank["D2"] = 25, 0, 0.9, 60000000
    blank["E2"] = award_formula(POLICY.clauses["1"], lambda f: refs[f].replace("1", "2"))
    return wb, where


@pytest.fixture(scope="module")
def recalculated(lo_recalc: Any) -> tuple[Path, list[tuple[str, int, dict[str, Any]]]]:
    wb, where = build()
    return lo_recalc({"formulas": wb})["formulas"], where


def test_native_formulas_agree_with_the_engine(recalculated: Any) -> None:
    path, where = recalculated
    wb = openpyxl.load_workbook(path, data_only=True)
    mismatches = []
    for sheet, row, case in where:
        ws = wb[sheet]
        got = ws.cell(row, ws.max_column - 1).value
        guarded = ws.cell(row, ws.max_column).value
        if guarded not in (None, ""):  # the blank-guarded form agrees too when inputs are complete
            assert guarded == got or case["facts"].keys() & set(DQ)
        expected = compute(case["clause"], case["facts"], 2023).amount
        if not isinstance(got, (int, float)) or Decimal(repr(got)).quantize(Decimal("0.01")) != expected:
            mismatches.append((case["clause"], case["facts"], got, str(expected)))
    assert not mismatches, mismatches[:5]
    assert len(where) > 250


def test_blank_guard_shows_nothing_until_required_inputs_are_filled(recalculated: Any) -> None:
    path, _ = recalculated
    ws = openpyxl.load_workbook(path, data_only=True)["blank"]
    assert ws["E1"].value in (None, "")
    assert ws["E2"].value == 300000


def test_formulas_use_only_portable_functions() -> None:
    import re

    wb, _ = build()
    used: set[str] = set()
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                if isinstance(cell.value, str) and cell.value.startswith("="):
                    used.update(re.findall(r"([A-Z]+)\(", cell.value))
    assert used <= {"IF", "MIN", "MAX", "SUM", "ROUND", "AND", "OR"}, used
