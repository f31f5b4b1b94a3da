"""The Excel functions (lanxi_xl.udfs) called as plain Python, as classic Excel would,
and the shipped classic macro workbook.

Expected amounts come from the hand-worked cases in tests/cases/lanxi-2022.yaml (the
same file the engine is tested against): every case a function can express is run
through that function, one cell at a time and as one spilled column.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import types
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import yaml

from lanxi_xl import udfs
from lanxi_xl.errors import InputError
from lanxi_xl.policy import current_policy

ROOT = Path(__file__).resolve().parents[1]
CASES = yaml.safe_load((ROOT / "tests" / "cases" / "lanxi-2022.yaml").read_text(encoding="utf-8"))
WORKBOOK = ROOT / "addin" / "lanxi-xl.xlsm"
CJK = re.compile(r"[\u4e00-\u9fff]")


def _as_call(case: dict[str, Any]) -> tuple[str, list[Any]] | None:
    """The function call that declares ``case``'s facts, or None if no function can."""
    if "year" in case:
        return None  # the functions always use the policy in force
    facts = case["facts"]
    for name, spec in udfs.specs().items():
        if case["clause"] not in spec.clauses:
            continue
        own = {fact for cid, fact in spec.facts if cid == case["clause"]}
        if set(facts) - own:
            return None  # art. 15 answers, meets_standard, misspelt facts: not an argument
        if spec.kind == "items":
            events = facts["events"]
            if any(isinstance(e, dict) and e.get("prefiled", True) is not True for e in events):
                return None  # the function takes pre-filed events only
            return name, [[[e["cost"] if isinstance(e, dict) else e] for e in events]]
        return name, [facts.get(fact) if cid == case["clause"] else None for cid, fact in spec.facts]
    return None


def _expected(case: dict[str, Any], args: list[Any]) -> Any:
    """Decimal amount, None for an all-blank call, or the InputError code (a str)."""
    if "error" in case:
        return case["error"]
    if all(a is None or a == [] for a in args):
        return None  # blank in, blank out (e.g. a pre-filed events list with no event)
    return Decimal(case.get("amount", "0"))


CALLS = [(c, call) for c in CASES if (call := _as_call(c)) is not None]


def test_every_function_has_hand_worked_cases() -> None:
    covered = {name for _, (name, _) in CALLS}
    assert covered == set(udfs.FUNCTIONS)
    assert len(CALLS) > 100


@pytest.mark.parametrize(
    ("case", "call"), CALLS, ids=[f"{n}-{i}" for i, (_, (n, _)) in enumerate(CALLS)]
)
def test_case_one_cell(case: dict[str, Any], call: tuple[str, list[Any]]) -> None:
    name, args = call
    expected = _expected(case, args)
    func = udfs.FUNCTIONS[name]
    if isinstance(expected, str):
        with pytest.raises(InputError) as info:
            func(*args)
        assert info.value.code == expected
        assert CJK.search(str(info.value)), str(info.value)
    else:
        assert func(*args) == expected


@pytest.mark.parametrize("name", [n for n in udfs.FUNCTIONS if udfs.specs()[n].kind != "items"])
def test_cases_as_one_spilled_column(name: str) -> None:
    """All of a function's cases as one formula over columns (twice: memo on repeats)."""
    rows = [(c, args) for c, (n, args) in CALLS if n == name] * 2
    columns = [[[args[i]] for _, args in rows] for i in range(len(udfs.specs()[name].params))]
    result, errors = udfs.evaluate(name, columns)
    assert len(result) == len(rows) and all(len(r) == 1 for r in result)
    bad = {e.row: e.error.code for e in errors}
    for i, (case, args) in enumerate(rows):
        expected = _expected(case, args)
        if isinstance(expected, str):
            assert bad.get(i) == expected and result[i] == [None]
        else:
            assert i not in bad and result[i] == [expected], (i, case)


def test_range_with_bad_rows_raises_naming_the_first_bad_cell() -> None:
    with pytest.raises(InputError) as info:
        udfs.LANXI_CROSSBORDER([[1200000], [""], ["120万"], [-5]])
    assert info.value.code == "NOT_A_NUMBER"
    assert str(info.value).startswith("第3行第1列：") and "120万" in str(info.value)


def test_events_takes_one_list_and_returns_one_amount() -> None:
    case = next(c for c, (n, a) in CALLS if n == "LANXI_EVENTS" and len(a[0]) == 5)
    column = [[e] for e in case["facts"]["events"]]
    row = [[e for e in case["facts"]["events"]]]
    expected = Decimal(case["amount"])
    assert udfs.LANXI_EVENTS(column) == udfs.LANXI_EVENTS(row) == udfs.LANXI_EVENTS(column + [[None]]) == expected
    assert udfs.LANXI_EVENTS([[None], [""]]) is None


# --- shapes ---------------------------------------------------------------------------


def test_scalar_in_scalar_out_and_shapes_are_kept() -> None:
    one = udfs.LANXI_CROSSBORDER(1_200_000)
    assert isinstance(one, Decimal) and one > 0
    assert udfs.LANXI_CROSSBORDER([[1_200_000]]) == [[one]]
    assert udfs.LANXI_CROSSBORDER([1_200_000, 1_200_000]) == [one, one]
    assert udfs.LANXI_CROSSBORDER([[1_200_000, 1_200_000]]) == [[one, one]]
    grid = udfs.LANXI_CROSSBORDER([[1_200_000, None], ["", 1_200_000]])
    assert grid == [[one, None], [None, one]]


def test_single_cells_broadcast_against_a_column() -> None:
    land = [[25], [25], [0]]
    # the same row three ways: scalars, 1×1 ranges, full columns
    by_scalar = udfs.LANXI_PARK(land, 0, 0.9, 60_000_000)
    by_cell = udfs.LANXI_PARK(land, [[0]], [[0.9]], [[60_000_000]])
    by_column = udfs.LANXI_PARK(land, [[0]] * 3, [[0.9]] * 3, [[60_000_000]] * 3)
    assert by_scalar == by_cell == by_column
    assert by_scalar[0] == by_scalar[1] == [udfs.LANXI_PARK(25, 0, 0.9, 60_000_000)]
    assert by_scalar[2] == [Decimal(0)]


def test_ranges_of_different_sizes_are_refused() -> None:
    with pytest.raises(InputError) as info:
        udfs.LANXI_WAREHOUSE_USE([[1], [2]], [[1], [2], [3]])
    assert info.value.code == "RANGE_SHAPE_MISMATCH" and "2行×1列" in str(info.value)


# --- blanks and bad input ----------------------------------------------------------------


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_blank_gives_blank_not_zero(blank: object) -> None:
    assert udfs.LANXI_AGRI(blank) is None
    assert udfs.LANXI_DEMO(blank) is None
    assert udfs.LANXI_PLATFORM(blank, blank) is None
    assert udfs.LANXI_RENT(*[blank] * 6) is None
    assert udfs.LANXI_AGRI([[blank], [blank]]) == [[None], [None]]


def test_platform_counts_only_the_filled_clause() -> None:
    investment_only = udfs.LANXI_PLATFORM(1_000_000, None)
    sales_only = udfs.LANXI_PLATFORM(None, 40_000_000)
    assert investment_only > 0 and sales_only > 0
    assert udfs.LANXI_PLATFORM(1_000_000, 40_000_000) == investment_only + sales_only


def test_a_partly_blank_row_is_an_error_not_a_guess() -> None:
    with pytest.raises(InputError) as info:
        udfs.LANXI_PARK(25, 0, 0.9, None)
    assert info.value.code == "MISSING_FACT" and "园区销售额" in str(info.value)


@pytest.mark.parametrize(
    ("func", "args", "code", "words"),
    [
        (udfs.LANXI_PARK, (25, 0, 85, 60_000_000), "RATE_OUT_OF_RANGE", "入驻率"),
        (udfs.LANXI_CROSSBORDER, (-1,), "NEGATIVE_VALUE", "不小于 0"),
        (udfs.LANXI_CROSSBORDER, ("一百万",), "NOT_A_NUMBER", "一百万"),
        (udfs.LANXI_CROSSBORDER, (True,), "NOT_A_NUMBER", "销售额"),
        (udfs.LANXI_DEMO, ("市级",), "UNKNOWN_CHOICE", "国家级"),
        (udfs.LANXI_TOWN, ("国家级",), "UNKNOWN_CHOICE", "示范村"),
        (udfs.LANXI_RENT, (100, 15000, 0, 0, 1e6, 13), "OUT_OF_RANGE", "月数"),
        (udfs.LANXI_AGRI, ("#N/A",), "NOT_A_NUMBER", "#N/A"),
    ],
)
def test_bad_input_is_a_chinese_input_error(func: Any, args: tuple[Any, ...], code: str, words: str) -> None:
    with pytest.raises(ValueError) as info:
        func(*args)
    assert isinstance(info.value, InputError) and info.value.code == code
    assert words in str(info.value)


def test_memo_keeps_true_apart_from_one() -> None:
    result, errors = udfs.evaluate("LANXI_CROSSBORDER", [[[1], [True], [1.0]]])
    assert result[0] == result[2] == [Decimal(0)] and result[1] == [None]
    assert [(e.row, e.error.code) for e in errors] == [(1, "NOT_A_NUMBER")]


# --- help texts ----------------------------------------------------------------------------


def test_help_names_article_and_title_from_the_policy_data() -> None:
    policy = current_policy()
    for name, func in udfs.FUNCTIONS.items():
        spec = udfs.specs()[name]
        first_line = func.__doc__.splitlines()[0]
        assert first_line == udfs.description(spec) and len(first_line) <= udfs.MAX_DOC
        for cid in spec.clauses:
            clause = policy.clause(cid)
            assert clause.cite in first_line and clause.title in first_line
        for param, (cid, fact) in zip(spec.params, spec.facts):
            doc = udfs.param_doc(spec, param)
            fs = policy.clause(cid).facts[fact]
            label = next(iter(fs.items.values())).label if fs.type == "items" else fs.label
            assert label in doc and len(doc) <= udfs.MAX_DOC and CJK.search(doc)
    for choice in policy.clause("2").facts["level"].choices:
        assert choice.label in udfs.param_doc(udfs.specs()["LANXI_DEMO"], "level")


def test_xlwings_decorators_register_name_category_and_help() -> None:
    """Under a real xlwings runtime (xlwings Server's decorators share classic xlwings'
    API and ordering rules) the module's own decorators give each function its Excel
    name and the policy-derived help."""
    code = (
        "import json, lanxi_xl.udfs as u;"
        "print(json.dumps({n: f.__xlfunc__ for n, f in vars(u).items() if hasattr(f, '__xlfunc__')},"
        " default=str, ensure_ascii=False))"
    )
    env = {**os.environ, "XLWINGS_ON_SERVER": "true", "XLWINGS_LICENSE_KEY": "noncommercial",
           "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    meta = json.loads(run.stdout)
    assert set(meta) == set(udfs.FUNCTIONS) | {"LANXI_EXPLAIN", "LANXI_POLICY"}
    for name, spec in udfs.specs().items():
        info = meta[name]
        assert info["excel_name"] == spec.short_name
        assert info["ret"]["doc"].startswith(udfs.description(spec))
        assert [a["doc"] for a in info["args"]] == [udfs.param_doc(spec, p) for p in spec.params]
        assert all(a["options"]["ndim"] == 2 for a in info["args"])
    assert meta["LANXI_EXPLAIN"]["args"][1]["vararg"] is True


# --- explanation, policy, command line --------------------------------------------------


def test_explain_says_which_tier_cap_or_why_zero() -> None:
    tier = udfs.LANXI_EXPLAIN("CROSSBORDER", 1_200_000)
    assert "第8条" in tier and "适用第2档" in tier and "原文：" in tier
    cap = udfs.LANXI_EXPLAIN("lanxi.marketing", 100_000)
    assert "起作用的上限：" in cap
    zero = udfs.LANXI_EXPLAIN("LANXI_AGRI", 100)
    assert "未达到奖励条件" in zero and "原因：" in zero
    both = udfs.LANXI_EXPLAIN("PLATFORM", 1_000_000, None)
    assert "第4条第1款" in both and "第4条第2款" in both and "参数为空白" in both and "合计" in both
    assert "空白" in udfs.LANXI_EXPLAIN("AGRI", None)
    events = udfs.LANXI_EXPLAIN("EVENTS", [[30_000], [50_000]])
    assert "第2项" in events


def test_explain_refuses_a_range_and_unknown_names() -> None:
    with pytest.raises(InputError) as info:
        udfs.LANXI_EXPLAIN("AGRI", [[1], [2]])
    assert info.value.code == "EXPLAIN_ONE_ROW"
    with pytest.raises(InputError) as info:
        udfs.LANXI_EXPLAIN("NOPE", 1)
    assert info.value.code == "UNKNOWN_FUNCTION" and "LANXI_CROSSBORDER" in str(info.value)


def test_policy_names_the_policy_in_force_and_its_date() -> None:
    policy = current_policy()
    text = udfs.LANXI_POLICY()
    assert policy.id in text and policy.title in text and policy.effective_from_zh in text


def test_call_by_name_as_the_cli_uses_it() -> None:
    assert udfs.call_by_name("LANXI_CROSSBORDER", ["1200000"]) == udfs.LANXI_CROSSBORDER(1_200_000)
    assert udfs.call_by_name("crossborder", [" 1200000 "]) == udfs.LANXI_CROSSBORDER(1_200_000)
    assert udfs.call_by_name("LANXI.EVENTS", ["30000", "50000"]) == udfs.LANXI_EVENTS([30_000, 50_000])
    assert udfs.call_by_name("LANXI_TRADEMARK", ["10000", ""]) == udfs.LANXI_TRADEMARK(10_000, None)
    assert udfs.call_by_name("LANXI_AGRI", [""]) is None
    assert udfs.call_by_name("LANXI_POLICY", []) == udfs.LANXI_POLICY()
    assert "第8条" in udfs.call_by_name("LANXI_EXPLAIN", ["CROSSBORDER", "1200000"])
    assert udfs.explain_by_name("LANXI_CROSSBORDER", ["1200000"]) == udfs.LANXI_EXPLAIN("CROSSBORDER", "1200000")
    for name, args, code in [
        ("LANXI_RENT", ["1"], "WRONG_ARGUMENT_COUNT"),
        ("LANXI_NOPE", ["1"], "UNKNOWN_FUNCTION"),
        ("LANXI_CROSSBORDER", ["1,200,000"], "NOT_A_NUMBER"),
    ]:
        with pytest.raises(InputError) as info:
            udfs.call_by_name(name, args)
        assert info.value.code == code and CJK.search(str(info.value))


# --- classic Excel ------------------------------------------------------------------------


@pytest.fixture
def classic_excel(monkeypatch: pytest.MonkeyPatch):
    """The process state of the classic COM server: xlwings.com_server's loop running."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    monkeypatch.setitem(sys.modules, "xlwings.com_server", types.SimpleNamespace(loop=loop))
    try:
        yield
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_classic_excel_shows_numbers_and_chinese_messages(classic_excel: None) -> None:
    good = udfs.LANXI_CROSSBORDER([[1_200_000]])
    assert isinstance(good[0][0], float) and good[0][0] > 0
    message = udfs.LANXI_PARK([[25]], [[0]], [[85]], [[60_000_000]])
    assert message == [["「电商企业整体入驻率」应为 0 到 1 之间的小数（如 85% 填 0.85 或 85%），收到“85”"]]
    spill = udfs.LANXI_CROSSBORDER([[1_200_000], ["abc"], [None]])
    assert spill[0] == good[0] and "abc" in spill[1][0] and spill[2] == [None]
    lines = udfs.LANXI_EXPLAIN("CROSSBORDER", 1_200_000)
    assert isinstance(lines, list) and "第8条" in lines[0][0]
    assert "没有名为" in udfs.LANXI_EXPLAIN("NOPE", 1)
    assert "大小不一致" in udfs.LANXI_WAREHOUSE_USE([[1], [2]], [[1], [2], [3]])


def test_outside_excel_errors_are_raised_again() -> None:
    with pytest.raises(InputError):
        udfs.LANXI_CROSSBORDER("abc")


# --- the classic macro workbook -------------------------------------------------------------


def test_macro_workbook_names_the_udf_module() -> None:
    wb = openpyxl.load_workbook(WORKBOOK, keep_vba=True)
    assert "xlwings.conf" in wb.sheetnames and "_xlwings.conf" not in wb.sheetnames
    conf = {row[0]: row[1] for row in wb["xlwings.conf"].iter_rows(values_only=True) if row[0]}
    assert conf["UDF Modules"] == "lanxi_xl.udfs"
    with zipfile.ZipFile(WORKBOOK) as z:
        assert "xl/vbaProject.bin" in z.namelist()
        assert b"Module=xlwings" in z.read("xl/vbaProject.bin")  # xlwings' VBA (ImportPythonUDFs)


def test_macro_workbook_example_uses_every_function() -> None:
    wb = openpyxl.load_workbook(WORKBOOK)
    formulas = [c.value for row in wb["示例"].iter_rows() for c in row if isinstance(c.value, str) and c.value.startswith("=")]
    used = {m for f in formulas for m in re.findall(r"\b(LANXI_[A-Z_]+)\(", f)}
    assert used == set(udfs.FUNCTIONS) | {"LANXI_EXPLAIN", "LANXI_POLICY"}
    assert "使用说明" in wb.sheetnames and "ImportPythonUDFs" in str([c.value for c in wb["使用说明"]["A"]])


def test_macro_workbook_is_rebuilt_by_the_build_script(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "addin"))
    try:
        import build_addin
    finally:
        sys.path.remove(str(ROOT / "addin"))
    built = build_addin.build_workbook(tmp_path / "rebuilt.xlsm")
    fresh = openpyxl.load_workbook(built, keep_vba=True)
    shipped = openpyxl.load_workbook(WORKBOOK, keep_vba=True)
    for sheet in ("xlwings.conf", "示例", "使用说明"):
        assert [list(r) for r in fresh[sheet].iter_rows(values_only=True)] == [
            list(r) for r in shipped[sheet].iter_rows(values_only=True)
        ], f"{sheet}: addin/lanxi-xl.xlsm is stale, run python addin/build_addin.py"
