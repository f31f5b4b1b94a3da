"""``lanxi-xl``: the command line around the engine (a thin edge: parse, call, print).

Errors a person can fix are printed in Chinese with their stable code and exit 2;
nothing here prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from .errors import InputError, LanxiError
from .money import format_amount
from .policy import Policy, current_policy, policy_for_year

Adder = Callable[[Any], None]


def _parse_fact(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise InputError("BAD_ARGUMENT", f"申报项应写成 名称=数值，如 usd_sales=1200000，收到“{text}”")
    name, _, value = text.partition("=")
    if ";" in value or "," in value:
        # A list fact, e.g. events=50000;30000 (one value per event).
        return name.strip(), [v for v in value.replace(",", ";").split(";")]
    return name.strip(), value


def add_calc(sub: Any) -> None:
    text = "计算一项奖励：lanxi-xl calc 8 usd_sales=1200000，或 lanxi-xl calc LANXI_CROSSBORDER 1200000"
    parser = sub.add_parser("calc", help=text, description=text)
    parser.add_argument("target", help="条款编号（如 8、4.1、11.2）或 Excel 函数名（如 LANXI_CROSSBORDER）")
    parser.add_argument("values", nargs="*", help="条款：名称=数值；函数：按参数顺序的数值")
    parser.add_argument("--year", help="申报年度（默认：现行政策）")
    parser.add_argument("--explain", action="store_true", help="打印中文计算过程")
    parser.add_argument("--json", action="store_true", help="以 JSON 输出")

    def run(ns: argparse.Namespace) -> int:
        if ns.target.upper().startswith("LANXI"):
            from . import udfs  # the Excel functions; imported only for this form

            if ns.explain:
                print(udfs.explain_by_name(ns.target, list(ns.values)))
            else:
                print(udfs.call_by_name(ns.target, list(ns.values)))
            return 0
        from .rules import compute

        facts = dict(_parse_fact(v) for v in ns.values)
        award = compute(ns.target, facts, ns.year)
        if ns.json:
            print(json.dumps(award.to_dict(), ensure_ascii=False, indent=2))
        elif ns.explain:
            print(award.explain())
        else:
            print(f"{award.cite} {award.title}：{format_amount(award.amount)}")
        return 0

    parser.set_defaults(run=run)


def add_policy(sub: Any) -> None:
    text = "显示适用的政策、条款和全部参数"
    parser = sub.add_parser("policy", help=text, description=text)
    parser.add_argument("--year", help="申报年度（默认：现行政策）")

    def run(ns: argparse.Namespace) -> int:
        policy = policy_for_year(ns.year) if ns.year else current_policy()
        print(describe_policy(policy))
        return 0

    parser.set_defaults(run=run)


def describe_policy(policy: Policy) -> str:
    lines = [
        f"{policy.id}《{policy.title}》",
        f"{policy.issuer}，{policy.issued:%Y-%m-%d}印发，自{policy.effective_from_zh}起实行，"
        f"适用{policy.first_year}年及以后年度的申报；同时废止{policy.replaces}",
    ]
    if policy.effective_until:
        lines.append(f"停止执行：{policy.effective_until:%Y-%m-%d}")
    for clause in policy.clauses.values():
        lines.append(f"\n{clause.cite} {clause.title}（条款编号 {clause.id}）")
        lines.append(f"  原文：{clause.text}")
        for p in clause.params.values():
            value = p.value
            if isinstance(value, Decimal):
                shown = str(value)
            elif isinstance(value, tuple):
                shown = "；".join(f"≥{t.threshold}→{t.amount}" for t in value)
            else:
                shown = "；".join(f"{k}→{v}" for k, v in value.items())
            lines.append(f"  {p.name} = {shown} {p.unit}（{p.quote}）")
    return "\n".join(lines)


# Each adds one subcommand to the parser; later layers (templates, check, review,
# serve, demo) append theirs here.
SUBCOMMANDS: list[Adder] = [add_calc, add_policy]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lanxi-xl", description="兰溪市电子商务奖励政策（兰政办发〔2022〕3号）计算与申报工具"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="命令")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and (stream.encoding or "").lower().replace("-", "") != "utf8":
            stream.reconfigure(encoding="utf-8", errors="replace")
    ns = build_parser().parse_args(argv)
    try:
        return int(ns.run(ns))
    except LanxiError as exc:
        print(f"错误 [{exc.code}]：{exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
