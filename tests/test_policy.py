"""The policy data file: its checks, its completeness, and that code holds no figure of it."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tokenize
from decimal import Decimal
from pathlib import Path

import pytest

from lanxi_xl.errors import PolicyFileError
from lanxi_xl.policy import POLICY_DIR, load_policy, policy_for_year
from lanxi_xl.rules import compute

ROOT = Path(__file__).resolve().parent.parent
SOURCE = POLICY_DIR / "lanxi-2022.yaml"
TEXT = SOURCE.read_text(encoding="utf-8")
POLICY_TEXT = ROOT.parent / "shared" / "policy" / "lanxi-2022-3.txt"


def broken(tmp_path: Path, old: str, new: str, count: int = 1) -> Path:
    assert old in TEXT, old
    path = tmp_path / "broken.yaml"
    path.write_text(TEXT.replace(old, new, count), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        # a figure that is not a number
        ("min_sales: {value: 150000,", "min_sales: {value: 十五万,", "clauses.11.2.params.min_sales.value"),
        # a clause without its original sentence
        ("    title: 跨境电商销售奖励\n    recipient: 开展跨境电商业务的企业\n    text:", "    title: 跨境电商销售奖励\n    recipient: 开展跨境电商业务的企业\n    txet:", "clauses.8"),
        # a condition naming a fact that is not declared
        ("{fact: sales, word: 达到及以上, param: min_sales}", "{fact: sale, word: 达到及以上, param: min_sales}", "clauses.1.conditions.all[2].fact"),
        # a counting word the engine does not know
        ("{fact: occupancy, word: 超过, param: min_occupancy}", "{fact: occupancy, word: 大于, param: min_occupancy}", "clauses.1.conditions.all[1].word"),
        # a cap whose parameter is missing
        ("limit: {param: annual_cap}\n\n  \"4.1\"", "limit: {param: annual_capp}\n\n  \"4.1\"", "clauses.3.award.cap.limit.param"),
        # tiers out of order
        ("- {from: 1000000, amount: 100000}\n          - {from: 2000000, amount: 200000}", "- {from: 2000000, amount: 200000}\n          - {from: 1000000, amount: 100000}", "clauses.8.params.tiers.value"),
        # a lookup table that does not match the choices
        ("value: {town: 200000, village: 100000}", "value: {town: 200000, villa: 100000}", "clauses.13.award.lookup.table"),
        # an interpretation that is not written down
        ("interpretation: art4-two-clauses", "interpretation: art4-three-clauses", "clauses.4.1.interpretation"),
        # an overlap group naming a clause that does not exist
        ('clauses: ["6", "8", "12"]', 'clauses: ["6", "8", "14"]', "overlap.groups[0].clauses[2]"),
        # the effective date in a wrong format
        ("effective_from: 2022-03-23", "effective_from: 2022年3月23日", "policy.effective_from"),
        # a negative figure
        ("rate: {value: 0.7,", "rate: {value: -0.7,", "clauses.9.params.rate.value"),
        # an unknown payment frequency
        ("payable: {kind: per_year}\n    facts:\n      usd_sales", "payable: {kind: sometimes}\n    facts:\n      usd_sales", "clauses.8.payable.kind"),
    ],
)
def test_malformed_policy_names_the_bad_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    with pytest.raises(PolicyFileError) as info:
        load_policy(broken(tmp_path, old, new))
    assert info.value.code == "POLICY_FILE_INVALID"
    assert info.value.key == key
    assert key in info.value.message and "broken.yaml" in info.value.message


def test_duplicate_key_is_refused(tmp_path: Path) -> None:
    path = broken(tmp_path, "      min_sales: {value: 30000000,", "      min_sales: {value: 1, unit: 元, quote: x}\n      min_sales: {value: 30000000,")
    with pytest.raises(PolicyFileError) as info:
        load_policy(path)
    assert info.value.code == "POLICY_FILE_SYNTAX"
    assert "duplicate key 'min_sales'" in info.value.message and "行" in info.value.message


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("policy: [unclosed\n", encoding="utf-8")
    with pytest.raises(PolicyFileError) as info:
        load_policy(path)
    assert info.value.code == "POLICY_FILE_SYNTAX"


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError) as info:
        load_policy(tmp_path / "missing.yaml")
    assert info.value.code == "POLICY_FILE_UNREADABLE"


def test_policy_identity() -> None:
    p = load_policy(SOURCE)
    assert p.id == "兰政办发〔2022〕3号"
    assert str(p.effective_from) == "2022-03-23"
    assert p.replaces == "兰政办发〔2014〕173号"
    assert p.effective_until is None


def test_a_successor_policy_is_a_new_data_file(tmp_path: Path) -> None:
    """Ending this policy and adding another needs data, not code."""
    ended = broken(tmp_path, "effective_until: null", "effective_until: 2025-12-31")
    successor_text = (
        TEXT.replace("id: 兰政办发〔2022〕3号", "id: 兰政办发〔2026〕1号")
        .replace("key: lanxi-2022", "key: lanxi-2026")
        .replace("effective_from: 2022-03-23", "effective_from: 2026-01-01")
        .replace("first_year: 2022", "first_year: 2026")
        .replace("- {from: 500000, amount: 50000}\n          - {from: 1000000, amount: 100000}",
                 "- {from: 500000, amount: 60000}\n          - {from: 1000000, amount: 100000}")
    )
    successor = tmp_path / "successor.yaml"
    successor.write_text(successor_text, encoding="utf-8")
    policies = (load_policy(ended), load_policy(successor))
    assert policy_for_year(2025, policies).id == "兰政办发〔2022〕3号"
    assert policy_for_year(2026, policies).id == "兰政办发〔2026〕1号"
    old = compute("8", {"usd_sales": 600000}, 2025, policy=policies[0])
    new = compute("8", {"usd_sales": 600000}, 2026, policy=policies[1])
    assert (old.amount, new.amount) == (Decimal("50000.00"), Decimal("60000.00"))
    with pytest.raises(Exception) as info:
        compute("8", {"usd_sales": 600000}, 2026, policy=policies[0])
    assert getattr(info.value, "code", "") == "YEAR_AFTER_POLICY"


def test_every_clause_quotes_the_policy_text() -> None:
    """Every clause sentence and every parameter quote is found verbatim in the official text."""
    if not POLICY_TEXT.exists():
        pytest.skip(f"official text not found at {POLICY_TEXT} (it lives in the shared/ folder beside the repo)")
    official = re.sub(r"\s+", "", POLICY_TEXT.read_text(encoding="utf-8"))
    p = load_policy(SOURCE)
    articles = {c.article for c in p.clauses.values()}
    assert articles == set(range(1, 14)), "articles 1-13 each have a clause"
    for clause in p.clauses.values():
        # a clause cut from a longer sentence ends in 。 where the text goes on with ；
        assert re.sub(r"\s+", "", clause.text).rstrip("。；") in official, clause.id
        for param in clause.params.values():
            assert param.quote in official, (clause.id, param.name, param.quote)
    for d in p.disqualifications:
        assert d.quote in official, d.name
    assert p.text in official and p.overlap_text in official and p.disqualification_text in official


def test_every_interpretation_is_documented() -> None:
    doc = (ROOT / "docs" / "interpretation.md").read_text(encoding="utf-8")
    p = load_policy(SOURCE)
    for interp_id in p.interpretations:
        assert f"`{interp_id}`" in doc, interp_id


def test_no_award_figure_in_python_code() -> None:
    """Every figure of the policy lives in the data file: none may appear as a literal in code."""
    p = load_policy(SOURCE)
    figures: set[Decimal] = set()
    for clause in p.clauses.values():
        for param in clause.params.values():
            v = param.value
            if isinstance(v, Decimal):
                figures.add(v)
            elif isinstance(v, tuple):
                figures.update(x for t in v for x in (t.threshold, t.amount))
            else:
                figures.update(v.values())
    figures = {f for f in figures if f >= 100}  # small numbers (0.8, 12, 3) are too common to police
    offenders = []
    for path in sorted((ROOT / "lanxi_xl").rglob("*.py")):
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
        for tok in tokens:
            if tok.type != tokenize.NUMBER:
                continue
            literal = tok.string.replace("_", "").lower()
            try:
                value = Decimal(int(literal, 0)) if literal[:2] in ("0x", "0o", "0b") else Decimal(literal.rstrip("j"))
            except ArithmeticError:
                continue
            if value in figures:
                offenders.append(f"{path.name}:{tok.start[0]} {tok.string}")
    assert not offenders, offenders


def test_core_imports_neither_xlwings_nor_openpyxl() -> None:
    code = (
        "import sys, lanxi_xl.rules, lanxi_xl.policy, lanxi_xl.money, lanxi_xl.facts, lanxi_xl.errors;"
        "bad = [m for m in ('xlwings', 'openpyxl') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
