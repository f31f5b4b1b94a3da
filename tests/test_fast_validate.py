"""The fast accept path of `forms.validate_instance` against plain jsonschema.

`forms._fast_accept` compiles each validator's schema into a predicate that may only say
"valid" where jsonschema finds no error (it may say "not sure" more often). Here it is
checked against a Draft202012Validator built from the committed schema files, as
bench/bench_check.py's `naive` builds it, over valid declarations and mutations of them.
"""

from __future__ import annotations

import copy
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
import referencing.jsonschema
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from formcases import MODEL, award_cases, credit_code, instance_for
from lanxi_xl import forms

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["all", *MODEL.articles]
KEY = (MODEL.policy.key, MODEL.template_version)


# jsonschema with the one keyword JSON Schema defines otherwise than Python's re does:
# ``pattern`` is ECMA-262, where a final "$" is the end of the text (forms._pattern).
_ECMA = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": forms._pattern})


def _reference() -> dict[str, jsonschema.Draft202012Validator]:
    """jsonschema on the committed schemas, with the forms' format checker (credit codes)."""
    folder = ROOT / "schemas" / forms.schema_dir(MODEL)
    schemas = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
    # Without "$schema" in the registered resources: jsonschema would validate a referenced
    # resource that names its dialect with that dialect's own class, not the extended one.
    registry: referencing.Registry = referencing.Registry().with_resources(
        (s["$id"], referencing.Resource.from_contents({k: v for k, v in s.items() if k != "$schema"},
                                                      referencing.jsonschema.DRAFT202012)) for s in schemas)
    by_id = {s["$id"]: s for s in schemas}
    return {t: _ECMA(by_id[MODEL.schema_id(forms.target_name(t))], registry=registry,
                     format_checker=forms._FORMAT_CHECKER) for t in TARGETS}


REFERENCE = _reference()


def reference_ok(target: str, doc: Any) -> bool:
    return next(REFERENCE[target].iter_errors(doc), None) is None


def fast(target: str) -> Callable[[Any], bool]:
    accept = forms._fast_accept(*KEY, target)
    assert accept is not None, f"the schema of {target} did not compile"
    return accept


def _seeds() -> dict[str, list[dict[str, Any]]]:
    """Valid declarations per target: every hand-worked case that makes one, and combinations."""
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in TARGETS}
    seen: set[str] = set()
    for n, case in enumerate(award_cases(), 1):
        doc = instance_for(case["clause"], case["facts"], case.get("year", 2023), n=n)
        text = json.dumps(doc, sort_keys=True)
        (art,) = doc["articles"]
        if text not in seen and reference_ok(art, doc):
            seen.add(text)
            out[art].append(doc)
    for i in range(6):  # combined declarations: i+1 articles each, common part of the first
        docs = [out[a][i % len(out[a])] for a in list(MODEL.articles)[i::3][: i + 1]]
        combined = copy.deepcopy(docs[0])
        for d in docs[1:]:
            combined["articles"].update(copy.deepcopy(d["articles"]))
        out["all"].append(combined)
    return out


SEEDS = _seeds()


class Str(str):
    pass


class Int(int):
    pass


OPTION_KEYS = sorted({o.key for art in MODEL.articles.values() for f in (*art.fields, *(c for t in art.tables
                      for c in t.columns)) for o in f.options} | {o.key for f in MODEL.all_fields for o in f.options})
POOL: list[Any] = [
    None, True, False, 0, -1, 1, 1.0, 1.5, -0.0, 1e-9, -1e-9, 0.9999, 1.0001, 0.85, 12, 13, 2**40, 10**30, 1e308,
    float("nan"), float("inf"), float("-inf"), 1899, 2023, 2023.0, 2023.5, 2101, 10**6,
    "", " ", "0", "60万", "=SUM(A1)", "是", "否", "x" * 30, "x" * 100, "x" * 101, "长" * 200, "长" * 201, "a\x01b",
    "tab\tand\nnewline", "line\n", "\u3000", credit_code(7), credit_code(7)[:-1] + "0", credit_code(7).lower(),
    credit_code(7) + "\n", "13800000000", "13800000000\n", "12800000000", "1380000000", "2023-05-01", "2023-02-30",
    "2023-5-1", "2023-05-01\n", "２０２３-05-01", "lanxi-2022", "2022.1", *OPTION_KEYS,
    [], [1], [{}], {}, {"x": 1}, (1,), Decimal("1"), OrderedDict(), Str("2023-05-01"), Int(1),
]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*path, i))


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _plain(value: Any) -> bool:
    """JSON as a reader produces it: no subclasses, no NaN or infinity (the fast path may refuse those)."""
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if type(value) is list:
        return all(_plain(v) for v in value)
    return type(value) in (str, int, bool, type(None))


def check(target: str, doc: Any) -> bool:
    """Soundness on one instance: returns what the fast path said."""
    accepted = fast(target)(doc)
    if accepted:
        assert reference_ok(target, doc), (target, doc)
    return accepted


# --- valid declarations are accepted fast ------------------------------------------------


def test_every_target_has_valid_seeds_and_the_fast_path_accepts_them() -> None:
    for target in TARGETS:
        assert SEEDS[target], target
        for doc in SEEDS[target]:
            assert reference_ok(target, doc)
            assert fast(target)(doc), (target, doc)
            assert forms.validate_instance(MODEL, target, doc) == []
        for doc in SEEDS[target] if target != "all" else []:
            assert fast("all")(doc)  # a single-article declaration is a valid combined one


def test_validate_instance_does_not_call_jsonschema_for_a_valid_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(validator: Any, instance: Any) -> list[forms.Problem]:
        raise AssertionError("jsonschema was run")

    monkeypatch.setattr(forms, "_schema_problems", slow)
    for target in TARGETS:
        for doc in SEEDS[target][:3]:
            assert forms.validate_instance(MODEL, target, doc) == []
    with pytest.raises(AssertionError, match="jsonschema was run"):
        forms.validate_instance(MODEL, "8", {"policy": "lanxi-2022"})


# --- soundness: every single-leaf change of a valid declaration ---------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_one_changed_value_is_accepted_only_where_jsonschema_accepts_it(target: str) -> None:
    """Each seed's every node replaced by each pool value; also complete for plain JSON values."""
    accepted = rejected = 0
    for doc in SEEDS[target][:2]:
        for path in list(_paths(doc))[1:]:
            for value in POOL:
                changed = copy.deepcopy(doc)
                _at(changed, path[:-1])[path[-1]] = value
                ok = check(target, changed)
                accepted += ok
                rejected += not ok
                if not ok and _plain(value):  # stricter than jsonschema only where it must be
                    assert not reference_ok(target, changed), (path, value)
    assert accepted > 50 and rejected > 500, (accepted, rejected)


# --- soundness and identical results: random mutations (hypothesis) -----------------------

UNKNOWN_KEYS = ["zzz", "title", "description", "type", "usd_exports", "events", "1", "8", "all", "common", ""]
VALUES = st.one_of(st.sampled_from(POOL), st.integers(-10, 10**9), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=8), st.booleans())


@st.composite
def mutated(draw: Any) -> tuple[str, Any]:
    home = draw(st.sampled_from(TARGETS))
    doc = copy.deepcopy(draw(st.sampled_from(SEEDS[home])))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(list(_paths(doc))))
        node, op = _at(doc, path), draw(st.sampled_from(["set", "set", "delete", "add", "grow", "take"]))
        if op == "set" and path:
            _at(doc, path[:-1])[path[-1]] = copy.deepcopy(draw(VALUES))
        elif op == "delete" and path and isinstance(_at(doc, path[:-1]), dict):
            del _at(doc, path[:-1])[path[-1]]
        elif op == "add" and isinstance(node, dict):
            node[draw(st.sampled_from(UNKNOWN_KEYS))] = copy.deepcopy(draw(VALUES))
        elif op == "grow" and isinstance(node, list) and node:
            node.extend(copy.deepcopy(node) * draw(st.integers(1, 20)))
        elif op == "take" and path:  # another part of the declaration in this place
            _at(doc, path[:-1])[path[-1]] = copy.deepcopy(_at(doc, draw(st.sampled_from(list(_paths(doc))))))
    target = draw(st.sampled_from([home, home, "all", *TARGETS]))
    return target, doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated())
def test_mutations_are_accepted_only_where_jsonschema_accepts_them_and_problems_are_unchanged(
        case: tuple[str, Any]) -> None:
    target, doc = case
    event(f"fast path accepted: {check(target, doc)}")
    slow = forms._schema_problems(forms._validator(*KEY, target), doc)
    assert forms.validate_instance(MODEL, target, doc) == slow
    assert (slow == []) == reference_ok(target, doc)


# --- what the compiler refuses -------------------------------------------------------------


def _art8_schema() -> dict[str, Any]:
    return copy.deepcopy(forms._validator(*KEY, "8").schema)  # type: ignore[no-any-return]


def _usd_sales(schema: dict[str, Any]) -> dict[str, Any]:
    return schema["properties"]["articles"]["properties"]["8"]["properties"]["usd_sales"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("extra", [
    {"multipleOf": 1000}, {"not": {"const": 5}}, {"oneOf": [{"type": "number"}]}, {"allOf": [{}]},
    {"exclusiveMinimum": 0}, {"if": {"type": "number"}, "then": {"minimum": 10**9}}, {"$ref": "#/$defs/x"},
    {"prefixItems": [{}]}, {"patternProperties": {"^x": {}}}, {"unevaluatedProperties": False},
    {"format": "no-such-format"}, {"items": [{}]}, {"minimum": "0"}, {"pattern": "("}, {"type": "decimal"},
    {"required": [1]}, {"enum": [[1]]}, {"x-unknown": 1},
])
def test_a_schema_with_anything_else_is_not_compiled(extra: dict[str, Any]) -> None:
    schema = _art8_schema()
    assert forms._compile_or_none(schema) is not None
    _usd_sales(schema).update(extra)
    assert forms._compile_or_none(schema) is None


def test_property_names_are_not_keywords() -> None:
    schema = {"type": "object", "additionalProperties": False, "required": ["not"],
              "properties": {"not": {"type": "string"}, "multipleOf": {"type": "integer"}, "title": {"const": "t"}},
              "dependentRequired": {"title": ["multipleOf"]}}
    accept = forms._compile_or_none(schema)
    assert accept is not None
    assert accept({"not": "x", "multipleOf": 3, "title": "t"})
    assert not accept({"not": "x", "title": "t"})  # dependentRequired
    assert not accept({"not": "x", "multipleOf": 3.5})
    assert not accept({"multipleOf": 3})  # required
    assert not accept({"not": "x", "other": 1})  # additionalProperties


@pytest.fixture
def multiple_of_1000(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Article 8's schema with usd_sales a multiple of 1000: a keyword the fast path does not know."""
    schema = _art8_schema()
    _usd_sales(schema)["multipleOf"] = 1000
    validator = forms._Validator(schema, format_checker=forms._FORMAT_CHECKER)
    monkeypatch.setattr(forms, "_validator", lambda policy, version, target: validator)
    forms._fast_accept.cache_clear()
    yield
    forms._fast_accept.cache_clear()


@pytest.mark.usefixtures("multiple_of_1000")
def test_an_uncompiled_schema_is_validated_by_jsonschema() -> None:
    assert forms._fast_accept(*KEY, "8") is None
    doc = instance_for("8", {"usd_sales": 1200000})
    assert forms.validate_instance(MODEL, "8", doc) == []
    doc["articles"]["8"]["usd_sales"] = 1200001
    assert [(p.pointer, p.keyword) for p in forms.validate_instance(MODEL, "8", doc)] == [
        ("/articles/8/usd_sales", "multipleOf")]


def test_a_final_dollar_is_the_end_of_the_text_as_in_json_schema() -> None:
    doc = next(d for d in SEEDS["8"])  # a valid declaration
    doc = copy.deepcopy(doc)
    doc["common"]["mobile"] += "\n"  # typed with Alt+Enter, or a JSON file's stray line break
    plain = jsonschema.Draft202012Validator({"pattern": forms.MOBILE_PATTERN})
    assert plain.is_valid(doc["common"]["mobile"])  # Python's "$" lets it through…
    assert not fast("8")(doc)  # …JSON Schema's does not, on either path
    [problem] = forms.validate_instance(MODEL, "8", doc)
    assert problem.pointer == "/common/mobile" and problem.keyword == "pattern"
