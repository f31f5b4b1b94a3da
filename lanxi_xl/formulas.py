"""The policy's award rules compiled to native spreadsheet formulas.

Declaration templates and the calculator workbook show a live estimate that must
work in Excel, WPS and LibreOffice without our add-in, so the expression trees of
the policy data are compiled here to formulas using only IF, MIN, MAX, SUM, ROUND,
AND and OR. Cells are named by the caller through ``ref``: this module knows the
rules, not the layout. Choice cells hold the choice's Chinese label, yes/no cells
hold 是/否, rates hold a fraction — as the templates' dropdowns and validations make
people type them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from .policy import Clause, FactSpec, Policy, find_node

Ref = Callable[[str], str]

# The legal counting words of the data file as spreadsheet operators (民法典第1259条).
OPERATORS: Mapping[str, str] = {
    "以上": ">=",
    "达到及以上": ">=",
    "届满": ">=",
    "以下": "<=",
    "以内": "<=",
    "超过": ">",
    "以外": ">",
    "不满": "<",
    "未达到": "<",
}


def number(value: Decimal) -> str:
    """A literal without exponent or trailing zeros: 300000, 0.8."""
    text = format(value.normalize(), "f")
    return text


def text_literal(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def is_yes(spec: FactSpec, cell: str) -> str:
    """A yes/no cell as a boolean; a blank cell counts as the fact's default."""
    if spec.has_default and spec.default is True:
        return f"{cell}<>{text_literal('否')}"
    return f"{cell}={text_literal('是')}"


class _Compiler:
    def __init__(self, clause: Clause, ref: Ref, items_total: Callable[[str], str] | None) -> None:
        self.clause = clause
        self.ref = ref
        self.items_total = items_total
        self.item_specs: Mapping[str, FactSpec] = {}
        self.item_ref: Ref | None = None

    def expr(self, node: Mapping[str, Any]) -> str:
        (kind, arg), = node.items()
        if kind == "fact":
            return self.ref(arg)
        if kind == "item":
            assert self.item_ref is not None
            return self.item_ref(arg)
        if kind == "param":
            return number(self.clause.params[arg].value)  # type: ignore[arg-type]
        if kind == "sum":
            return "(" + "+".join(self.expr(a) for a in arg) + ")"
        if kind == "product":
            return "*".join(self.expr(a) for a in arg)
        if kind == "quotient":
            den = self.expr(arg[1])
            return f"IF({den}=0,0,({self.expr(arg[0])})/({den}))"
        if kind == "cap":
            return f"MIN({self.expr(arg['of'])},{self.expr(arg['limit'])})"
        if kind == "remaining":
            return f"MAX({self.expr(arg['total'])}-{self.expr(arg['used'])},0)"
        if kind == "tiers":
            return self._tiers(arg)
        if kind == "lookup":
            return self._lookup(arg)
        if kind == "sum_each":
            if self.items_total is None:
                raise ValueError(f"clause {self.clause.id} sums a detail table: pass items_total")
            return self.items_total(arg["items"])
        raise ValueError(f"unknown expression kind {kind!r}")

    def _tiers(self, arg: Mapping[str, Any]) -> str:
        param = self.clause.params[arg["table"]]
        op = OPERATORS[param.word or "达到及以上"]
        value = self.expr(arg["of"])
        formula = "0"
        for tier in param.value:  # type: ignore[union-attr]
            formula = f"IF({value}{op}{number(tier.threshold)},{number(tier.amount)},{formula})"
        # Built lowest-first, so the outermost IF tests the highest tier.
        return formula

    def _lookup(self, arg: Mapping[str, Any]) -> str:
        spec = self.clause.facts[arg["of"]["fact"]]
        table: Mapping[str, Decimal] = self.clause.params[arg["table"]].value  # type: ignore[assignment]
        cell = self.expr(arg["of"])
        formula = "0"
        for choice in reversed(spec.choices):
            formula = f"IF({cell}={text_literal(choice.label)},{number(table[choice.key])},{formula})"
        return formula

    def condition(self, node: Mapping[str, Any]) -> str:
        if "all" in node:
            return "AND(" + ",".join(self.condition(s) for s in node["all"]) + ")"
        if "any" in node:
            return "OR(" + ",".join(self.condition(s) for s in node["any"]) + ")"
        if "fact" in node and node["word"] == "是":
            return is_yes(self.clause.facts[node["fact"]], self.ref(node["fact"]))
        op = OPERATORS[node["word"]]
        if "fact" in node:
            return f"{self.ref(node['fact'])}{op}{number(self.clause.params[node['param']].value)}"  # type: ignore[arg-type]
        return f"{self.expr(node['left'])}{op}{self.expr(node['right'])}"


def award_expression(clause: Clause, ref: Ref, items_total: Callable[[str], str] | None = None) -> str:
    """The clause's award in yuan, rounded to the fen, as an expression (no leading '=')."""
    c = _Compiler(clause, ref, items_total)
    value = f"ROUND({c.expr(clause.award)},2)"
    if clause.conditions:
        return f"IF({c.condition(clause.conditions)},{value},0)"
    return value


def required_blank_test(clause: Clause, ref: Ref) -> str | None:
    """True while a required figure of the clause is still blank (the estimate shows nothing)."""
    cells = [ref(n) for n, s in clause.facts.items() if s.type != "items" and not s.has_default]
    if not cells:
        return None
    return "OR(" + ",".join(f"{cell}=\"\"" for cell in cells) + ")"


def award_formula(
    clause: Clause, ref: Ref, items_total: Callable[[str], str] | None = None, blank_guard: bool = True
) -> str:
    """``=`` + the clause's award; blank while a required input is blank (if ``blank_guard``)."""
    expression = award_expression(clause, ref, items_total)
    guard = required_blank_test(clause, ref) if blank_guard else None
    return f"=IF({guard},\"\",{expression})" if guard else f"={expression}"


def item_formula(clause: Clause, items_fact: str, ref: Ref) -> str:
    """One detail-table row's contribution to a ``sum_each`` (no '='); a blank row gives 0."""
    found = find_node(clause.award, lambda n: isinstance(n.get("sum_each"), Mapping)
                      and n["sum_each"]["items"] == items_fact)
    if found is None:
        raise ValueError(f"clause {clause.id} has no sum over {items_fact!r}")
    node = found["sum_each"]
    specs = clause.facts[items_fact].items
    c = _Compiler(clause, ref, None)
    c.item_specs, c.item_ref = specs, ref
    value = c.expr(node["of"])
    if "where" in node:
        value = f"IF({is_yes(specs[node['where']], ref(node['where']))},{value},0)"
    first = next(iter(specs))
    return f"IF({ref(first)}=\"\",0,{value})"


def disqualified_formula(policy: Policy, ref: Ref) -> str:
    """True when an art. 15 answer disqualifies (no '='): a flag is 是, or a rate falls short."""
    tests = []
    for d in policy.disqualifications:
        cell = ref(d.name)
        if d.word:
            tests.append(f"AND({cell}<>\"\",{cell}{OPERATORS[d.word]}{number(d.value)})")  # type: ignore[arg-type]
        else:
            tests.append(f"{cell}={text_literal('是')}")
    return "OR(" + ",".join(tests) + ")"
