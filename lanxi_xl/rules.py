"""The award engine: the policy's clauses evaluated on declared facts.

A clause's award is an expression tree from the policy data, built from a few named
mechanisms (publicodes-style): ``tiers`` (达到…及以上 brackets), ``lookup`` (an
amount per title), ``cap`` (最高不超过), ``sum_each`` (per item, e.g. per event),
``remaining`` (a lifetime total less what was received) and plain arithmetic.
Conditions compare a fact with a parameter using the legal counting word of the
text, read per 民法典第1259条. Art. 15 (disqualifications) and art. 14 (就高不重复)
are functions here too. Nothing in this module knows a figure of the policy.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from .facts import split_facts
from .money import FEN, ZERO, format_amount, format_rate, round_money
from .policy import Clause, FactSpec, OverlapGroup, Param, Policy, current_policy, parse_year, policy_for_year

# 民法典第1259条：“以上、以下、以内、届满”包括本数；“不满、超过、以外”不包括本数。
LEGAL_WORDS: Mapping[str, tuple[Callable[[Any, Any], bool], str]] = {
    "以上": (operator.ge, "≥"),
    "达到及以上": (operator.ge, "≥"),
    "届满": (operator.ge, "≥"),
    "以下": (operator.le, "≤"),
    "以内": (operator.le, "≤"),
    "超过": (operator.gt, ">"),
    "以外": (operator.gt, ">"),
    "不满": (operator.lt, "<"),
    "未达到": (operator.lt, "<"),
}


FEN_ZERO = ZERO.quantize(FEN)


class Status(StrEnum):
    PAYABLE = "payable"
    NIL = "nil"  # conditions met, but nothing is due (no cost declared, lifetime total used up)
    BELOW_THRESHOLD = "below_threshold"
    NOT_APPLICABLE = "not_applicable"  # art. 15


STATUS_ZH = {
    Status.PAYABLE: "可奖励",
    Status.NIL: "符合条件，核定金额为0",
    Status.BELOW_THRESHOLD: "未达到奖励条件",
    Status.NOT_APPLICABLE: "不适用（第15条不得享受情形）",
}


@dataclass(frozen=True)
class Step:
    """One line of the reasoning, citing where in the policy it comes from."""

    kind: str  # policy | condition | tier | lookup | cap | item | disqualification | result
    cite: str
    text: str
    quote: str = ""
    ok: bool | None = None

    def render(self) -> str:
        mark = {True: "✓ ", False: "✗ ", None: ""}[self.ok]
        source = f"（原文：{self.quote}）" if self.quote else ""
        return f"[{self.cite}] {mark}{self.text}{source}"


@dataclass(frozen=True)
class Award:
    """What one clause pays for one declaration, and why."""

    clause_id: str
    cite: str
    title: str
    policy_id: str
    year: int | None
    status: Status
    amount: Decimal
    facts: Mapping[str, Any]
    binding_cap: str | None = None
    caps_bound: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    trace: tuple[Step, ...] = field(default=(), compare=False)

    @property
    def eligible(self) -> bool:
        return self.status in (Status.PAYABLE, Status.NIL)

    def explain(self) -> str:
        year = f"{self.year}年度" if self.year else "现行政策"
        lines = [
            f"{self.cite} {self.title}（{self.policy_id}，{year}）",
            f"结果：{STATUS_ZH[self.status]}，金额 {format_amount(self.amount)}",
        ]
        lines += [f"原因：{r}" for r in self.reasons]
        if self.binding_cap:
            lines.append(f"起作用的上限：{self.binding_cap}")
        if self.trace:
            lines.append("计算过程：")
            lines += [f"  {n}. {s.render()}" for n, s in enumerate(self.trace, start=1)]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "clause": self.clause_id,
            "cite": self.cite,
            "title": self.title,
            "policy": self.policy_id,
            "year": self.year,
            "status": str(self.status),
            "amount": str(self.amount),
            "binding_cap": self.binding_cap,
            "caps_bound": list(self.caps_bound),
            "reasons": list(self.reasons),
            "trace": [
                {"kind": s.kind, "cite": s.cite, "text": s.text, "quote": s.quote, "ok": s.ok} for s in self.trace
            ],
        }


def compute(
    clause_id: object,
    facts: Mapping[str, object],
    year: object = None,
    *,
    policy: Policy | None = None,
) -> Award:
    """The award of one clause for one declaration, with the full trace."""
    return _run(clause_id, facts, year, policy, tracing=True)


def amount(
    clause_id: object, facts: Mapping[str, object], year: object = None, *, policy: Policy | None = None
) -> Decimal:
    """Just the amount, no trace: the path the 100,000-row Excel spills take.

    Same answer as ``compute(...).amount`` (a test holds them together), from the
    clause's tree compiled once into closures.
    """
    return amount_function(clause_id, year, policy=policy)(facts)


def amount_function(
    clause_id: object, year: object = None, *, policy: Policy | None = None
) -> Callable[[Mapping[str, object]], Decimal]:
    """:func:`amount` with the policy and clause resolved once, for many rows of facts."""
    policy, _ = _resolve(year, policy)
    clause = policy.clause(str(clause_id).strip())
    run = _compiled(clause)
    chosen = policy

    def amount_of(facts: Mapping[str, object]) -> Decimal:
        values, answers = split_facts(chosen, clause, facts)
        if answers and disqualified(chosen, answers):
            return FEN_ZERO
        return run(values)

    return amount_of


def _resolve(year: object, policy: Policy | None) -> tuple[Policy, int | None]:
    if year is None:
        return policy or current_policy(), None
    y = parse_year(year)
    return policy_for_year(y, (policy,) if policy else None), y


def _run(clause_id: object, raw: Mapping[str, object], year: object, policy: Policy | None, tracing: bool) -> Award:
    policy, y = _resolve(year, policy)
    clause = policy.clause(str(clause_id).strip())
    facts, answers = split_facts(policy, clause, raw)
    ev = _Evaluation(policy, clause, facts, tracing)
    if tracing:
        period = f"{y}年度申报" if y else "未指定年度，按现行政策"
        ev.note("policy", policy_cite(policy), f"适用{policy.id}《{policy.title}》，{period}")

    reasons = disqualified(policy, answers)
    if reasons:
        for reason in reasons:
            ev.note("disqualification", f"第{policy.disqualification_article}条", reason, ok=False)
        return ev.award(y, Status.NOT_APPLICABLE, ZERO, tuple(reasons))

    passed = ev.condition(clause.conditions) if clause.conditions else True
    value = ev.expr(clause.award)
    if not passed or ev.below:
        failing = tuple(ev.below) or ("未满足申报条件",)
        return ev.award(y, Status.BELOW_THRESHOLD, ZERO, failing)
    total = round_money(value)
    if total == 0:
        why = f"{ev.caps_bound[-1]}为0" if ev.caps_bound else "申报的计算基数为0"
        return ev.award(y, Status.NIL, total, (why,))
    return ev.award(y, Status.PAYABLE, total, ())


def policy_cite(policy: Policy) -> str:
    return f"第{policy.article}条"


# --- art. 15 -------------------------------------------------------------------------


def disqualified(policy: Policy, answers: Mapping[str, Any]) -> list[str]:
    """The art. 15 reasons that apply, in the order of the text (empty: none)."""
    reasons = []
    for d in policy.disqualifications:
        if d.name not in answers:
            continue
        value = answers[d.name]
        if d.word:
            test, _ = LEGAL_WORDS[d.word]
            if test(value, d.value):
                reasons.append(f"{d.label}{format_rate(value)}，{d.word}{format_rate(d.value)}（{d.quote}）")  # type: ignore[arg-type]
        elif value:
            reasons.append(f"{d.label}（{d.quote}）")
    return reasons


# --- the mechanisms ------------------------------------------------------------------


class _Evaluation:
    """Evaluates one clause's conditions and award tree, collecting the trace."""

    def __init__(self, policy: Policy, clause: Clause, facts: Mapping[str, Any], tracing: bool) -> None:
        self.policy = policy
        self.clause = clause
        self.facts = facts
        self.tracing = tracing
        self.trace: list[Step] = []
        self.below: list[str] = []
        self.caps_bound: list[str] = []
        self.item: Mapping[str, Any] | None = None
        self.in_any = 0
        self.item_specs: Mapping[str, FactSpec] = {}

    def note(self, kind: str, cite: str, text: str, quote: str = "", ok: bool | None = None) -> None:
        if self.tracing:
            self.trace.append(Step(kind, cite, text, quote, ok))

    def award(self, year: int | None, status: Status, value: Decimal, reasons: tuple[str, ...]) -> Award:
        c = self.clause
        bound = tuple(self.caps_bound) if status is not Status.BELOW_THRESHOLD else ()
        self.note("result", c.cite, f"{STATUS_ZH[status]}：{format_amount(value)}", ok=status is Status.PAYABLE)
        return Award(
            clause_id=c.id,
            cite=c.cite,
            title=c.title,
            policy_id=self.policy.id,
            year=year,
            status=status,
            amount=round_money(value),
            facts=self.facts,
            binding_cap=bound[-1] if bound else None,
            caps_bound=bound,
            reasons=reasons,
            trace=tuple(self.trace),
        )

    # conditions ------------------------------------------------------------------

    def condition(self, node: Mapping[str, Any]) -> bool:
        if "all" in node:
            # Every condition is evaluated so the trace lists each one that fails.
            results = [self.condition(sub) for sub in node["all"]]
            return all(results)
        if "any" in node:
            self.in_any += 1
            results = [self.condition(sub) for sub in node["any"]]
            self.in_any -= 1
            ok = any(results)
            self.note("condition", self.clause.cite, "以上条件满足其一即可：" + ("满足" if ok else "均不满足"), ok=ok)
            if not ok:
                self.below.append("以下条件均不满足：" + "；".join(self._describe_cond(s) for s in node["any"]))
            return ok
        if "fact" in node and node["word"] == "是":
            ok = bool(self.facts[node["fact"]])
            spec = self.clause.facts[node["fact"]]
            self.note("condition", self.clause.cite, f"「{spec.label}」：{'是' if ok else '否'}", node.get("quote", ""), ok)
            if not ok and not self.in_any:
                self.below.append(f"不满足“{spec.label}”")
            return ok
        if "fact" in node:
            param = self.clause.params[node["param"]]
            spec = self.clause.facts[node["fact"]]
            left, right = self.facts[node["fact"]], param.value
            left_text, right_text = f"「{spec.label}」{fmt_fact(spec, left)}", fmt_param(param)
            quote = param.quote
        else:
            left, right = self.expr(node["left"]), self.expr(node["right"])
            left_text = f"{node.get('label') or self.describe(node['left'])} {fmt_money(left)}"
            right_text = f"{node.get('right_label') or self.describe(node['right'])} {fmt_money(right)}"
            quote = ""
        test, symbol = LEGAL_WORDS[node["word"]]
        ok = test(left, right)
        text = f"{left_text} {node['word']}（{symbol}）{right_text}：{'是' if ok else '否'}"
        self.note("condition", self.clause.cite, text, quote, ok)
        if not ok and not self.in_any:
            self.below.append(f"{left_text}，未{node['word']}{right_text}" if node["word"] != "达到及以上"
                              else f"{left_text}，未达到{right_text}")
        return ok

    def _describe_cond(self, node: Mapping[str, Any]) -> str:
        if "fact" in node and "param" in node:
            return f"「{self.clause.facts[node['fact']].label}」{node['word']}{fmt_param(self.clause.params[node['param']])}"
        return "子条件"

    # expressions -----------------------------------------------------------------

    def expr(self, node: Mapping[str, Any]) -> Any:
        (kind, arg), = node.items()
        return getattr(self, "_" + kind)(arg)

    def _fact(self, name: str) -> Any:
        return self.facts[name]

    def _item(self, name: str) -> Any:
        assert self.item is not None  # guaranteed by the policy loader's checks
        return self.item[name]

    def _param(self, name: str) -> Decimal:
        return self.clause.params[name].value  # type: ignore[return-value]

    def _sum(self, args: Sequence[Mapping[str, Any]]) -> Decimal:
        return sum((self.expr(a) for a in args), ZERO)

    def _product(self, args: Sequence[Mapping[str, Any]]) -> Decimal:
        result = Decimal(1)
        for a in args:
            result *= self.expr(a)
        return result

    def _quotient(self, args: Sequence[Mapping[str, Any]]) -> Decimal:
        num, den = self.expr(args[0]), self.expr(args[1])
        return num / den if den else ZERO

    def _remaining(self, arg: Mapping[str, Any]) -> Decimal:
        total, used = self.expr(arg["total"]), self.expr(arg["used"])
        left = max(total - used, ZERO)
        if self.tracing:
            self.note(
                "cap",
                self.clause.cite,
                f"累计总额 {fmt_money(total)}，已获 {fmt_money(used)}，剩余额度 {fmt_money(left)}",
            )
        return left

    def _cap(self, arg: Mapping[str, Any]) -> Decimal:
        base, limit = self.expr(arg["of"]), self.expr(arg["limit"])
        bound = base > limit
        if bound:
            self.caps_bound.append(arg["label"])
        value = limit if bound else base
        if self.tracing:
            verdict = "超过上限，按上限" if bound else "未超过上限，按计算值"
            quote = self._quote_of(arg["limit"])
            limit_text = self.describe(arg["limit"])
            if "param" not in arg["limit"]:
                limit_text += f" = {fmt_money(limit)}"
            self.note(
                "cap",
                self.clause.cite,
                f"{arg['label']}：{self.describe(arg['of'])} = {fmt_money(base)}；"
                f"上限 {limit_text}；{verdict} {fmt_money(value)}",
                quote,
                None,
            )
        return value

    def _tiers(self, arg: Mapping[str, Any]) -> Decimal:
        param = self.clause.params[arg["table"]]
        value = self.expr(arg["of"])
        test, symbol = LEGAL_WORDS[param.word or "达到及以上"]
        tiers: tuple[Any, ...] = param.value  # type: ignore[assignment]
        chosen = None
        for n, tier in enumerate(tiers, start=1):
            if test(value, tier.threshold):
                chosen = (n, tier)
        unit = param.threshold_unit or param.unit
        label = self.describe(arg["of"])
        shown = f"{label} {format_amount(value, unit)}"
        if chosen is None:
            lowest = tiers[0].threshold
            self.below.append(f"{shown}，未达到最低档 {format_amount(lowest, unit)}")
            self.note("tier", self.clause.cite, f"{shown}，未达到最低档 {format_amount(lowest, unit)}", param.quote, False)
            return ZERO
        n, tier = chosen
        nxt = f"；下一档 {format_amount(tiers[n].threshold, unit)}" if n < len(tiers) else "（最高档）"
        self.note(
            "tier",
            self.clause.cite,
            f"{shown} {param.word or '达到及以上'}（{symbol}）{format_amount(tier.threshold, unit)}，"
            f"适用第{n}档，奖励 {format_amount(tier.amount)}{nxt}",
            param.quote,
            True,
        )
        return tier.amount

    def _lookup(self, arg: Mapping[str, Any]) -> Decimal:
        param = self.clause.params[arg["table"]]
        key = self.expr(arg["of"])
        table: Mapping[str, Decimal] = param.value  # type: ignore[assignment]
        spec = self.clause.facts[arg["of"]["fact"]]
        label = next(c.label for c in spec.choices if c.key == key)
        self.note("lookup", self.clause.cite, f"「{spec.label}」为{label}，奖励 {format_amount(table[key])}", param.quote, True)
        return table[key]

    def _sum_each(self, arg: Mapping[str, Any]) -> Decimal:
        spec = self.clause.facts[arg["items"]]
        total = ZERO
        self.item_specs = spec.items
        rows = self.facts[arg["items"]]
        for n, row in enumerate(rows, start=1):
            if "where" in arg and not row[arg["where"]]:
                label = spec.items[arg["where"]].label
                self.note("item", self.clause.cite, f"第{n}项：未{label}，不予补助", arg.get("where_quote", ""), False)
                continue
            self.item = row
            first = next(iter(spec.items))
            shown = fmt_fact(spec.items[first], row[first])
            self.note("item", self.clause.cite, f"第{n}项：「{spec.items[first].label}」{shown}")
            total += self.expr(arg["of"])
        self.item = None
        if not rows:
            self.note("item", self.clause.cite, f"未申报「{spec.label}」", ok=False)
        return total

    # descriptions ----------------------------------------------------------------

    def describe(self, node: Mapping[str, Any]) -> str:
        """A formula in words: 80% × 「办公研发实付租金」."""
        (kind, arg), = node.items()
        if kind == "fact":
            return f"「{self.clause.facts[arg].label}」"
        if kind == "item":
            return f"「{self.item_specs[arg].label}」"
        if kind == "param":
            return fmt_param(self.clause.params[arg])
        if kind == "sum":
            return "（" + " + ".join(self.describe(a) for a in arg) + "）"
        if kind == "product":
            return " × ".join(self.describe(a) for a in arg)
        if kind == "quotient":
            return f"{self.describe(arg[0])} ÷ {self.describe(arg[1])}"
        if kind == "remaining":
            return f"{self.describe(arg['total'])}减已获"
        if kind == "cap":
            return f"min({self.describe(arg['of'])}, {self.describe(arg['limit'])})"
        if kind == "sum_each":
            return f"各项「{self.clause.facts[arg['items']].label}」补助之和"
        if kind in ("tiers", "lookup"):
            return self.describe(arg["of"])
        raise ValueError(f"unknown expression kind {kind!r}")

    def _quote_of(self, node: Mapping[str, Any]) -> str:
        """The sentence a limit comes from: the first parameter it uses."""
        (kind, arg), = node.items()
        if kind == "param":
            return self.clause.params[arg].quote
        subs = arg if isinstance(arg, list) else list(arg.values()) if isinstance(arg, Mapping) else []
        for sub in subs:
            if isinstance(sub, Mapping):
                found = self._quote_of(sub)
                if found:
                    return found
        return ""


def fmt_money(value: Decimal) -> str:
    return format_amount(value)


def fmt_param(param: Param) -> str:
    value = param.value
    assert isinstance(value, Decimal)
    if param.unit == "比例":
        return format_rate(value)
    return format_amount(value, param.unit)


def fmt_fact(spec: FactSpec, value: Any) -> str:
    if spec.type == "rate":
        return format_rate(value)
    return format_amount(value, spec.unit)


# --- art. 14 ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Unpaid:
    award: Award
    reason: str


@dataclass(frozen=True)
class Resolution:
    """Art. 14 applied to the candidate awards of one matter."""

    paid: Award | None
    unpaid: tuple[Unpaid, ...]


def highest_of(candidates: Sequence[Award], matter: str = "同一事项", article: int = 14) -> Resolution:
    """就高不重复: pay the highest payable candidate; keep the others with the reason.

    Ties go to the candidate listed first, so the caller's order (e.g. by article)
    makes the choice reproducible.
    """
    payable = [a for a in candidates if a.status is Status.PAYABLE]
    paid = max(payable, key=lambda a: a.amount) if payable else None
    unpaid = []
    for a in candidates:
        if a is paid:
            continue
        if a.status is not Status.PAYABLE or paid is None:
            unpaid.append(Unpaid(a, f"{STATUS_ZH[a.status]}" + (f"：{'；'.join(a.reasons)}" if a.reasons else "")))
        else:
            unpaid.append(
                Unpaid(
                    a,
                    f"{matter}涉及多项补助，按“就高不重复”原则（第{article}条）只发放最高一项："
                    f"{paid.cite}{paid.title} {format_amount(paid.amount)}；本项 {format_amount(a.amount)} 不发放",
                )
            )
    return Resolution(paid, tuple(unpaid))


def overlap_group(policy: Policy, clause_id: str) -> OverlapGroup | None:
    """The art. 14 group a clause belongs to, if the policy names one."""
    return next((g for g in policy.overlap_groups if clause_id in g.clauses), None)


# --- the most a clause can pay -------------------------------------------------------


def ceiling(clause: Clause) -> Decimal | None:
    """The most one declaration under ``clause`` can be paid, or None if unbounded."""
    return _ceiling(clause, clause.award)


def _ceiling(clause: Clause, node: Mapping[str, Any]) -> Decimal | None:
    (kind, arg), = node.items()
    if kind == "param":
        return clause.params[arg].value  # type: ignore[return-value]
    if kind == "cap":
        bounds = [b for b in (_ceiling(clause, arg["of"]), _ceiling(clause, arg["limit"])) if b is not None]
        return min(bounds) if bounds else None
    if kind == "remaining":
        return _ceiling(clause, arg["total"])
    if kind == "tiers":
        return max(t.amount for t in clause.params[arg["table"]].value)  # type: ignore[union-attr]
    if kind == "lookup":
        return max(clause.params[arg["table"]].value.values())  # type: ignore[union-attr]
    if kind == "sum":
        parts = [_ceiling(clause, a) for a in arg]
        return None if any(p is None for p in parts) else sum(parts, ZERO)  # type: ignore[arg-type]
    return None


# --- the same trees compiled to closures (the fast path) ------------------------------

Fn = Callable[[Mapping[str, Any], Mapping[str, Any] | None], Any]
_COMPILED: dict[int, tuple[Clause, Callable[[Mapping[str, Any]], Decimal]]] = {}


def _compiled(clause: Clause) -> Callable[[Mapping[str, Any]], Decimal]:
    entry = _COMPILED.get(id(clause))
    if entry is None or entry[0] is not clause:  # ids are reused after a clause is freed
        cond = _compile_cond(clause, clause.conditions) if clause.conditions else None
        expr = _compile_expr(clause, clause.award)

        def run(facts: Mapping[str, Any]) -> Decimal:
            if cond is not None and not cond(facts):
                return FEN_ZERO
            return round_money(expr(facts, None))

        entry = _COMPILED[id(clause)] = (clause, run)
    return entry[1]


def _compile_cond(clause: Clause, node: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], bool]:
    if "all" in node or "any" in node:
        subs = [_compile_cond(clause, n) for n in node.get("all", node.get("any", []))]
        combine = all if "all" in node else any
        return lambda f: combine(s(f) for s in subs)
    if "fact" in node and node["word"] == "是":
        name = node["fact"]
        return lambda f: bool(f[name])
    test = LEGAL_WORDS[node["word"]][0]
    if "fact" in node:
        name, limit = node["fact"], clause.params[node["param"]].value
        return lambda f: test(f[name], limit)
    left, right = _compile_expr(clause, node["left"]), _compile_expr(clause, node["right"])
    return lambda f: test(left(f, None), right(f, None))


def _compile_expr(clause: Clause, node: Mapping[str, Any]) -> Fn:
    (kind, arg), = node.items()
    if kind == "fact":
        return lambda f, it: f[arg]
    if kind == "item":
        return lambda f, it: it[arg]  # type: ignore[index]
    if kind == "param":
        value = clause.params[arg].value
        return lambda f, it: value
    if kind in ("sum", "product", "quotient"):
        subs = [_compile_expr(clause, a) for a in arg]
        if kind == "sum":
            return lambda f, it: sum((s(f, it) for s in subs), ZERO)
        if kind == "product":
            def product(f: Mapping[str, Any], it: Mapping[str, Any] | None) -> Decimal:
                result = Decimal(1)
                for s in subs:
                    result *= s(f, it)
                return result
            return product
        num, den = subs

        def quotient(f: Mapping[str, Any], it: Mapping[str, Any] | None) -> Decimal:
            d = den(f, it)
            return num(f, it) / d if d else ZERO
        return quotient
    if kind == "cap":
        of, limit = _compile_expr(clause, arg["of"]), _compile_expr(clause, arg["limit"])
        return lambda f, it: min(of(f, it), limit(f, it))
    if kind == "remaining":
        total, used = _compile_expr(clause, arg["total"]), _compile_expr(clause, arg["used"])
        return lambda f, it: max(total(f, it) - used(f, it), ZERO)
    if kind == "tiers":
        param = clause.params[arg["table"]]
        test = LEGAL_WORDS[param.word or "达到及以上"][0]
        highest_first = tuple(reversed(param.value))  # type: ignore[arg-type]
        of = _compile_expr(clause, arg["of"])

        def tiers(f: Mapping[str, Any], it: Mapping[str, Any] | None) -> Decimal:
            x = of(f, it)
            for tier in highest_first:
                if test(x, tier.threshold):
                    return tier.amount  # type: ignore[no-any-return]
            return ZERO
        return tiers
    if kind == "lookup":
        table = clause.params[arg["table"]].value
        of = _compile_expr(clause, arg["of"])
        return lambda f, it: table[of(f, it)]  # type: ignore[index]
    if kind == "sum_each":
        items, where, each = arg["items"], arg.get("where"), _compile_expr(clause, arg["of"])
        return lambda f, it: sum((each(f, row) for row in f[items] if where is None or row[where]), ZERO)
    raise ValueError(f"unknown expression kind {kind!r}")
