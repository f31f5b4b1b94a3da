"""``lanxi-xl``: the command line around the engine (a thin edge: parse, call, print).

Errors a person can fix are printed in Chinese with their stable code and exit 2;
nothing here prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import json
import os
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

            result = (udfs.explain_by_name if ns.explain else udfs.call_by_name)(ns.target, list(ns.values))
            print("" if result is None else result)  # a blank input gives a blank answer, as in Excel
            return 0
        from .rules import STATUS_ZH, compute

        facts = dict(_parse_fact(v) for v in ns.values)
        award = compute(ns.target, facts, ns.year)
        if ns.json:
            print(json.dumps(award.to_dict(), ensure_ascii=False, indent=2))
        elif ns.explain:
            print(award.explain())
        else:
            line = f"{award.cite} {award.title}：{format_amount(award.amount)}"
            if award.status != "payable":  # a zero always says why
                line += f"（{STATUS_ZH[award.status]}：{'；'.join(award.reasons)}）"
            print(line)
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


def add_review(sub: Any) -> None:
    text = "审核一个文件夹中交回的申报：登记到台账数据库，按跨申报、跨年度规则核定，并导出台账"
    parser = sub.add_parser("review", help=text, description=text)
    parser.add_argument("folder", help="申报文件所在的文件夹（交回的 .xlsx/.xlsm 申报表，以及 .json 申报数据）")
    parser.add_argument("--year", required=True, help="审核年度，如 2023")
    parser.add_argument("--db", default=None, help="台账数据库文件（默认：环境变量 LANXI_XL_DB 或 ./lanxi-registry.sqlite）")
    parser.add_argument("-o", "--output", help="台账工作簿（默认：兰溪电商奖励台账-年度.xlsx）")

    def run(ns: argparse.Namespace) -> int:
        from .ledger import write_ledger
        from .registry import default_db_path, open_registry
        from .review import format_review, ledger_data, review_folder

        db = ns.db or default_db_path()
        result = review_folder(ns.folder, ns.year, db)
        out = ns.output or f"兰溪电商奖励台账-{result.year}.xlsx"
        with open_registry(db) as reg:
            path = write_ledger(ledger_data(reg, result.year), out)
        print(format_review(result))
        print(f"台账：{path}")
        return 0

    parser.set_defaults(run=run)


def add_ledger(sub: Any) -> None:
    text = "从台账数据库导出某一年度的台账工作簿（不重新审核）"
    parser = sub.add_parser("ledger", help=text, description=text)
    parser.add_argument("--year", required=True, help="年度，如 2023")
    parser.add_argument("--db", default=None, help="台账数据库文件（默认：环境变量 LANXI_XL_DB 或 ./lanxi-registry.sqlite）")
    parser.add_argument("-o", "--output", help="台账工作簿（默认：兰溪电商奖励台账-年度.xlsx）")

    def run(ns: argparse.Namespace) -> int:
        from .ledger import write_ledger
        from .policy import parse_year
        from .registry import default_db_path, open_registry
        from .review import ledger_data

        year = parse_year(ns.year)
        with open_registry(ns.db or default_db_path()) as reg:
            path = write_ledger(ledger_data(reg, year), ns.output or f"兰溪电商奖励台账-{year}.xlsx")
        print(f"台账：{path}")
        return 0

    parser.set_defaults(run=run)


def add_history(sub: Any) -> None:
    text = "历史发放记录：lanxi-xl history import 文件.xlsx|.csv，使跨年度规则计入系统启用前已发放的奖励"
    parser = sub.add_parser("history", help=text, description=text)
    actions = parser.add_subparsers(dest="action", required=True, metavar="操作")
    imp = actions.add_parser("import", help="导入历史发放记录（全部导入或全部不导入）")
    imp.add_argument("file", help="含表头 统一社会信用代码、企业名称、年度、条款、金额（可选：称号/级别、备注）的 .xlsx 或 .csv")
    imp.add_argument("--db", default=None, help="台账数据库文件（默认：环境变量 LANXI_XL_DB 或 ./lanxi-registry.sqlite）")

    def run(ns: argparse.Namespace) -> int:
        from .history import import_history
        from .registry import default_db_path

        result = import_history(ns.file, ns.db or default_db_path())
        if result.already_imported:
            print(f"{result.file_name} 此前已导入，未重复导入。")
            return 0
        skipped = result.rows_read - result.rows_added
        print(f"已导入 {result.file_name}：{result.rows_added} 行" + (f"（另有 {skipped} 行此前已导入，跳过）" if skipped else ""))
        if result.years_redecided:
            years = "、".join(map(str, result.years_redecided))
            print(f"已按历史记录重新核定 {years} 年度；请用 lanxi-xl ledger --year 年度 重新导出台账。")
        return 0

    imp.set_defaults(run=run)


def add_templates(sub: Any) -> None:
    text = "重新生成申报表 JSON Schema（schemas/）与申报表、计算器工作簿（templates/）"
    parser = sub.add_parser("templates", help=text, description=text)
    parser.add_argument("--out", default=".", help="输出目录（在其下写 schemas/ 和 templates/，默认当前目录）")

    def run(ns: argparse.Namespace) -> int:
        from .templates import generate  # openpyxl only for this command

        for path in generate(ns.out):
            print(path)
        return 0

    parser.set_defaults(run=run)


def add_fill(sub: Any) -> None:
    text = "把 JSON 申报数据写入申报表（免申即享）：lanxi-xl fill 8 data.json -o 申报表.xlsx"
    parser = sub.add_parser("fill", help=text, description=text)
    parser.add_argument("article", help="条款（1至13），或 all 表示综合申报表")
    parser.add_argument("data", help="JSON 申报数据文件（须符合该条款的 JSON Schema）")
    parser.add_argument("-o", "--output", required=True, help="输出的 .xlsx 文件")

    def run(ns: argparse.Namespace) -> int:
        from .templates import fill, load_json

        path = fill(ns.article, load_json(ns.data), ns.output)
        print(f"已写入 {path}")
        return 0

    parser.set_defaults(run=run)


def add_serve(sub: Any) -> None:
    text = "启动 xlwings Server（Office.js 加载项，Excel 网页版/Mac/Windows），默认只监听本机 127.0.0.1"
    parser = sub.add_parser("serve", help=text, description=text)
    parser.add_argument("--host", default="127.0.0.1", help="监听地址（默认 127.0.0.1）")
    parser.add_argument("--port", type=int, default=8000, help="端口（默认 8000）")
    parser.add_argument("--ssl-certfile", help="HTTPS 证书（Excel 要求加载项使用 https）")
    parser.add_argument("--ssl-keyfile", help="HTTPS 私钥")
    parser.add_argument("--public-url", help="反向代理后的对外 https 地址，用于生成 manifest.xml")

    def run(ns: argparse.Namespace) -> int:
        try:
            from .server import serve
        except ImportError as exc:  # the optional [server] extra is not installed
            raise LanxiError(
                "SERVER_EXTRA_MISSING", f"缺少服务器组件（{exc.name}），请先执行：pip install \"lanxi-xl[server]\""
            ) from None
        serve(ns.host, ns.port, ns.ssl_certfile, ns.ssl_keyfile, ns.public_url)
        return 0

    parser.set_defaults(run=run)


def add_demo(sub: Any) -> None:
    text = "演示：为约50家虚构企业生成两个年度的申报表（含错误和可疑文件），检查、审核、写出台账和标注副本"
    parser = sub.add_parser("demo", help=text, description=text)
    parser.add_argument("--out", default="lanxi-demo", help="输出文件夹（默认 ./lanxi-demo）")
    parser.add_argument("--seed", type=int, default=2022, help="随机种子（默认 2022，结果可重现）")
    parser.add_argument("--enterprises", type=int, default=50, help="虚构企业数量（默认 50）")

    def run(ns: argparse.Namespace) -> int:
        from .demo import run as run_demo

        run_demo(ns.out, ns.seed, ns.enterprises)
        return 0

    parser.set_defaults(run=run)


def add_check(sub: Any) -> None:
    text = "检查交回的申报表：逐个单元格列出错误、计算奖励；可批量检查文件夹，恶意或损坏的文件不会中断批次"
    parser = sub.add_parser("check", help=text, description=text)
    parser.add_argument("paths", nargs="+", metavar="FILE_OR_DIR",
                        help="申报表文件或文件夹（文件夹中的 .xlsx/.xlsm/.xls，含子文件夹）")
    parser.add_argument("--json", action="store_true", help="以 JSON 输出（每个文件一个对象的列表）")
    parser.add_argument("--annotate", metavar="OUT_DIR",
                        help="在此文件夹生成批注副本：错误单元格标红并附批注，另加“审核意见”工作表")
    parser.add_argument("--explain", action="store_true", help="打印每项奖励的中文计算过程")

    def run(ns: argparse.Namespace) -> int:
        from pathlib import Path

        from . import intake

        paths = [Path(p) for p in ns.paths]
        for p in paths:
            if not p.exists():
                raise InputError("PATH_NOT_FOUND", f"找不到文件或文件夹：{p}", path=str(p))
        out = Path(ns.annotate) if ns.annotate else None
        bar = _ProgressBar(sys.stderr) if sys.stderr.isatty() else None
        made = 0

        def progress(done: int, total: int, report: intake.FileReport, copy: Path | None) -> None:
            nonlocal made
            made += copy is not None
            if bar and total > 1:
                bar.clear()
            if not ns.json:
                print(intake.format_report(report, ns.explain), flush=bar is not None)
            if bar and total > 1:
                bar.draw(done, total)

        reports = intake.check_paths(paths, out, progress)
        if bar:
            bar.clear()
        if not reports:
            raise InputError("NO_FILES", "没有找到要检查的申报表（.xlsx、.xlsm、.xls）")
        if ns.json:
            print(intake.dumps(reports))
        else:
            print(intake.format_summary(reports))
            if out is not None:
                print(f"批注副本：{out}（{made}份，错误单元格标红并附批注，另见“审核意见”工作表）")
        return 0 if all(r.valid for r in reports) else 1

    parser.set_defaults(run=run)


class _ProgressBar:
    """One line on a terminal's stderr: redrawn in place, cleared before other output."""

    def __init__(self, stream: Any, width: int = 30) -> None:
        self.stream, self.width = stream, width

    def draw(self, done: int, total: int) -> None:
        filled = self.width * done // max(total, 1)
        self.stream.write(f"\r检查中 [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}")
        self.stream.flush()

    def clear(self) -> None:
        self.stream.write("\r\033[K")
        self.stream.flush()


# Each adds one subcommand to the parser; later layers (templates, check, review,
# serve, demo) append theirs here.
SUBCOMMANDS: list[Adder] = [
    add_calc, add_policy, add_templates, add_fill, add_review, add_ledger, add_history, add_serve, add_demo,
    add_check,
]


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
    except BrokenPipeError:  # output piped into `head`: not an error of ours
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - silence the flush at exit
        return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
