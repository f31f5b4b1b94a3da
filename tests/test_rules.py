"""The engine against hand-worked cases, legal counting, art. 14/15/17 and properties."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lanxi_xl.errors import InputError
from lanxi_xl.policy import current_policy, policy_for_year
from lanxi_xl.rules import Status, amount, ceiling, compute, highest_of, overlap_group

CASES_FILE = Path(__file__).parent / "cases" / "lanxi-2022.yaml"
CASES: list[dict[str, Any]] = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))
POLICY = policy_for_year(2023)


def case_id(case: Mapping[str, Any]) -> str:
    facts = ",".join(f"{k}={v}" for k, v in case["facts"].items())
    return f"{case['clause']}:{facts}"[:90]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_case(case: dict[str, Any]) -> None:
    year = case.get("year", 2023)
    if "error" in case:
        with pytest.raises(InputError) as info:
            compute(case["clause"], case["facts"], year)
        assert info.value.code == case["error"]
        assert info.value.message  # a Chinese message, not an empty string
        return
    award = compute(case["clause"], case["facts"], year)
    assert award.status == Status(case["status"]), award.explain()
    assert award.amount == Decimal(case.get("amount", "0.00")), award.explain()
    assert award.amount.as_tuple().exponent == -2  # always to the fen
    if "binding_cap" in case:
        assert award.binding_cap == case["binding_cap"], award.explain()
    # the fast path the Excel spills take agrees with the traced one
    assert amount(case["clause"], case["facts"], year) == award.amount


def test_every_clause_has_cases() -> None:
    covered = {c["clause"] for c in CASES}
    assert set(POLICY.clauses) <= covered


def _thresholds(node: Mapping[str, Any], clause: Any) -> Iterator[tuple[str, Decimal]]:
    """(fact, threshold) pairs tested directly by conditions and tier tables."""
    if "all" in node or "any" in node:
        for sub in node.get("all", node.get("any", [])):
            yield from _thresholds(sub, clause)
    elif "fact" in node and "param" in node:
        yield node["fact"], clause.params[node["param"]].value
    elif "tiers" in node:
        fact = node["tiers"]["of"]["fact"]
        for tier in clause.params[node["tiers"]["table"]].value:
            yield fact, tier.threshold


def test_every_boundary_is_tested_at_and_around() -> None:
    """Each threshold of the data file has a case at it, just below it and just above it."""
    missing = []
    for cid, clause in POLICY.clauses.items():
        pairs = list(_thresholds(clause.conditions or {}, clause)) + list(_thresholds(clause.award, clause))
        for fact, threshold in pairs:
            seen = [
                Decimal(str(c["facts"][fact]))
                for c in CASES
                if c["clause"] == cid and "error" not in c and isinstance(c["facts"].get(fact), (int, float))
            ]
            integer = clause.facts[fact].type == "integer"
            near = Decimal(1) if integer else max(Decimal("0.01"), threshold * Decimal("0.001"))
            if threshold not in seen:
                missing.append(f"{cid}.{fact} at {threshold}")
            if not any(threshold - near <= v < threshold for v in seen) and threshold > 0:
                missing.append(f"{cid}.{fact} just below {threshold}")
            if not any(threshold < v <= threshold + near for v in seen):
                missing.append(f"{cid}.{fact} just above {threshold}")
    assert not missing, missing


def test_legal_counting_words_match_the_civil_code() -> None:
    # 以上/达到…及以上 include the number; 超过/不满/未达到 exclude it (民法典第1259条).
    from lanxi_xl.rules import LEGAL_WORDS

    inclusive = {"以上", "达到及以上", "届满", "以下", "以内"}
    for word, (test, _) in LEGAL_WORDS.items():
        assert test(Decimal(5), Decimal(5)) is (word in inclusive), word


def test_year_before_policy_names_the_effective_date() -> None:
    with pytest.raises(InputError) as info:
        compute("8", {"usd_sales": 1200000}, 2021)
    assert info.value.code == "YEAR_BEFORE_POLICY"
    assert "2022年3月23日" in info.value.message and "兰政办发〔2022〕3号" in info.value.message


def test_years_from_2022_on_are_under_this_policy() -> None:
    for year in (2022, "2023", 2026, 2026.0):
        assert compute("8", {"usd_sales": 1200000}, year).policy_id == "兰政办发〔2022〕3号"
    assert current_policy().id == "兰政办发〔2022〕3号"


def test_unknown_clause() -> None:
    with pytest.raises(InputError) as info:
        compute("99", {}, 2023)
    assert info.value.code == "UNKNOWN_CLAUSE"


def test_trace_cites_threshold_tier_and_cap() -> None:
    award = compute("8", {"usd_sales": 1200000}, 2023)
    text = award.explain()
    assert "[第8条]" in text and "1,200,000.00美元" in text and "第2档" in text
    assert "以B2C形式当年实现销售额达50万美元" in text  # the original sentence

    rent = compute(
        "3",
        {"office_m2": 100, "office_rent": 30000, "storage_m2": 200, "storage_rent": 20000,
         "online_sales": 3000000, "months": 12},
        2023,
    )
    assert rent.binding_cap == "办公研发部分上限（12元/㎡·月）"
    assert any(s.kind == "cap" and "超过上限" in s.text and "14,400.00元" in s.text for s in rent.trace)
    assert all(s.cite.startswith("第") for s in rent.trace)


def test_below_threshold_and_not_applicable_are_distinct() -> None:
    below = compute("8", {"usd_sales": 100}, 2023)
    out = compute("8", {"usd_sales": 1200000, "dishonest": "是"}, 2023)
    assert below.status is Status.BELOW_THRESHOLD and "未达到最低档" in below.reasons[0]
    assert out.status is Status.NOT_APPLICABLE and "被列为失信企业" in out.reasons[0]
    assert not below.eligible and not out.eligible


def test_art14_pays_only_the_highest() -> None:
    live = compute("6", {"sales": 12000000}, 2023)  # 100,000
    cross = compute("8", {"usd_sales": 2500000}, 2023)  # 200,000
    agri = compute("12", {"online_sales": 600000}, 2023)  # 20,000
    none = compute("12", {"online_sales": 10}, 2023)
    result = highest_of([live, cross, agri, none], matter="同一销售额")
    assert result.paid is cross
    assert [u.award for u in result.unpaid] == [live, agri, none]
    reason = result.unpaid[0].reason
    assert "就高不重复" in reason and "第8条" in reason and "100,000.00元" in reason
    assert "就高不重复" in result.unpaid[1].reason
    assert "未达到奖励条件" in result.unpaid[2].reason


def test_art14_tie_goes_to_the_first_listed() -> None:
    a = compute("6", {"sales": 10000000}, 2023)
    b = compute("12", {"online_sales": 5000000}, 2023)
    assert a.amount == b.amount == Decimal("100000.00")
    assert highest_of([a, b]).paid is a
    assert highest_of([b, a]).paid is b


def test_art14_nothing_payable() -> None:
    result = highest_of([compute("6", {"sales": 1}, 2023)])
    assert result.paid is None and len(result.unpaid) == 1


def test_overlap_groups_come_from_the_data() -> None:
    group = overlap_group(POLICY, "8")
    assert group is not None and set(group.clauses) == {"6", "8", "12"}
    assert overlap_group(POLICY, "3") is None


# --- properties -------------------------------------------------------------------

money = st.decimals(min_value=0, max_value=10**10, places=2, allow_nan=False, allow_infinity=False)
rate = st.decimals(min_value=0, max_value=1, places=4, allow_nan=False, allow_infinity=False)


def facts_for(clause_id: str) -> st.SearchStrategy[dict[str, Any]]:
    clause = POLICY.clauses[clause_id]
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, spec in clause.facts.items():
        if spec.type in ("money", "usd", "number"):
            fields[name] = money
        elif spec.type == "integer":
            fields[name] = st.integers(int(spec.min or 0), int(spec.max or 1000))
        elif spec.type == "rate":
            fields[name] = rate
        elif spec.type == "bool":
            fields[name] = st.booleans()
        elif spec.type == "choice":
            fields[name] = st.sampled_from([c.key for c in spec.choices])
        elif spec.type == "items":
            fields[name] = st.lists(st.fixed_dictionaries({"cost": money, "prefiled": st.booleans()}), max_size=8)
    return st.fixed_dictionaries(fields)


ALL_CLAUSES = sorted(POLICY.clauses)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
@pytest.mark.parametrize("clause_id", ALL_CLAUSES)
def test_award_is_never_negative_nor_above_its_cap(clause_id: str, data: st.DataObject) -> None:
    facts = data.draw(facts_for(clause_id))
    award = compute(clause_id, facts, 2023)
    assert award.amount >= 0
    top = ceiling(POLICY.clauses[clause_id])
    assert top is not None, f"clause {clause_id} has no ceiling"
    assert award.amount <= top


TIERED = {"6": "sales", "8": "usd_sales", "12": "online_sales", "5": "service_revenue", "4.2": "platform_sales"}


@settings(max_examples=200, deadline=None)
@given(a=money, b=money, clause_id=st.sampled_from(sorted(TIERED)))
def test_award_never_falls_when_sales_rise(a: Decimal, b: Decimal, clause_id: str) -> None:
    low, high = sorted((a, b))
    fact = TIERED[clause_id]
    assert amount(clause_id, {fact: low}, 2023) <= amount(clause_id, {fact: high}, 2023)


def test_ceilings_are_the_policy_maxima() -> None:
    tops = {cid: ceiling(c) for cid, c in POLICY.clauses.items()}
    # figures read off the text by hand, not from the data file
    assert tops == {
        "1": 300000, "2": 500000, "3": 100000, "4.1": 300000, "4.2": 100000, "5": 50000, "6": 200000,
        "7": 100000, "8": 200000, "9": 20000, "10": 40000, "11.1": 500000, "11.2": 200000, "12": 100000,
        "13": 200000,
    }
