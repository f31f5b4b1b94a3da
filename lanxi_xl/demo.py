"""``lanxi-xl demo``: the whole toolkit on fictional enterprises, end to end.

About fifty fictional Lanxi enterprises (fixed seed) declare several articles in two
years. Their filled declarations are generated from the templates, a few are made
wrong (numbers typed as text, a bad credit code, a formula, an inserted row, a
missing field) and a few hostile (truncated, CSV renamed, macro, zip bomb, entity
bomb). Then the checker and the review run on an SQLite registry, the ledgers and the
annotated copies are written, and a summary says where to look.

Every figure a fictional enterprise declares is derived from the policy data
(thresholds, caps, rates times a random factor), so the demo stays meaningful when the
data file changes and no award figure appears here.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from .errors import LanxiError
from .forms import credit_code_check_char
from .policy import Clause
from .samples import DQ_NAMES, MODEL, POLICY, article_data, common, make_all, rewrite_zip

MARKER = ".lanxi-demo"
YEARS = (2023, 2024)
PLACES = ("兰江", "云山", "上华", "永昌", "赤溪", "女埠", "游埠", "诸葛", "香溪", "马涧", "梅江", "黄店", "横溪", "柏社")
TRADES = ("电子商务", "网络科技", "供应链管理", "农产品", "直播文化传媒", "跨境贸易", "数字营销", "电商产业园管理")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙胡朱高林何郭马罗"
GIVEN = ("伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超", "秀英", "建华", "志强")
# Which articles a fictional enterprise declares, by kind of business (article keys).
PROFILES: tuple[tuple[str, ...], ...] = (
    ("8",), ("8", "9"), ("8", "11"), ("6",), ("6", "12"), ("6", "8", "12"), ("12",), ("3",), ("3", "10"),
    ("5",), ("7",), ("4",), ("1",), ("1", "2"), ("2",), ("13",), ("10", "9"), ("11",),
)


@dataclass(frozen=True)
class Enterprise:
    n: int
    name: str
    credit_code: str
    contact: str
    mobile: str
    articles: tuple[str, ...]


@dataclass
class DemoResult:
    out: Path
    files: dict[int, list[Path]] = field(default_factory=dict)
    reports: dict[int, list[Any]] = field(default_factory=dict)
    reviews: dict[int, Any] = field(default_factory=dict)
    ledgers: dict[int, Path] = field(default_factory=dict)
    annotated: Path | None = None
    db: Path | None = None


def enterprises(rng: random.Random, count: int = 50) -> list[Enterprise]:
    result = []
    used: set[str] = set()
    for n in range(1, count + 1):
        while True:
            name = f"兰溪市{rng.choice(PLACES)}{rng.choice(TRADES)}有限公司"
            if name not in used:
                used.add(name)
                break
        # 91 (enterprise) + 330781 (兰溪市) + 9 characters of organisation code + check char
        body = f"91330781MA2{rng.randrange(36**6):06X}{n:02d}"[:17]
        code = body + (credit_code_check_char(body) or "0")
        contact = rng.choice(SURNAMES) + rng.choice(GIVEN)
        mobile = "1" + rng.choice("3589") + "".join(rng.choice("0123456789") for _ in range(9))
        result.append(Enterprise(n, name, code, contact, mobile, rng.choice(PROFILES)))
    return result


# --- facts from the policy data --------------------------------------------------------


def _param(clause: Clause, name: str) -> Decimal:
    value = clause.params[name].value
    assert isinstance(value, Decimal)
    return value


def _money(x: Decimal | float) -> float:
    return float(Decimal(str(x)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _first_tier(clause: Clause, table: str = "tiers") -> Decimal:
    return clause.params[table].value[0].threshold  # type: ignore[index,union-attr]


def _scaled(rng: random.Random, base: Decimal, low: float, high: float) -> float:
    return _money(base * Decimal(str(round(rng.uniform(low, high), 4))))


FactsMaker = Callable[[random.Random, Clause], dict[str, Any]]


def _rent(rng: random.Random, c: Clause) -> dict[str, Any]:
    office = rng.randrange(40, 400)
    storage = rng.choice((0, 0, rng.randrange(50, 800)))
    months = rng.choice((12, 12, 12, 10, 8, 6, 2))
    office_rate_cap = _param(c, "office_unit_cap") / _param(c, "office_rate")
    storage_rate_cap = _param(c, "storage_unit_cap") / _param(c, "storage_rate")
    per_m2 = _param(c, "min_sales_per_m2") * (office + storage) * months / _param(c, "months_per_year")
    return {
        "office_m2": office,
        "office_rent": _scaled(rng, office_rate_cap * office * months, 0.6, 1.5),
        "storage_m2": storage,
        "storage_rent": _scaled(rng, storage_rate_cap * storage * months, 0.6, 1.5),
        "online_sales": _scaled(rng, per_m2, 0.7, 4),
        "months": months,
    }


MAKERS: Mapping[str, FactsMaker] = {
    "1": lambda rng, c: {
        "land_mu": _scaled(rng, _param(c, "min_land_mu"), 0.6, 2),
        "floor_m2": _scaled(rng, _param(c, "min_floor_m2"), 0.5, 1.6),
        "occupancy": round(rng.uniform(0.7, 0.98), 4),
        "sales": _scaled(rng, _param(c, "min_sales"), 0.7, 2.5),
    },
    "2": lambda rng, c: {"level": rng.choice(c.facts["level"].choices).key},
    "3": _rent,
    "4.1": lambda rng, c: {"investment": _scaled(rng, _param(c, "min_investment"), 0.7, 4)},
    "4.2": lambda rng, c: {"platform_sales": _scaled(rng, _param(c, "min_sales"), 0.5, 2)},
    "5": lambda rng, c: {"service_revenue": _scaled(rng, _param(c, "min_revenue"), 0.6, 3)},
    "6": lambda rng, c: {"sales": _scaled(rng, _first_tier(c), 0.6, 12)},
    "7": lambda rng, c: {
        "events": [
            {"cost": _scaled(rng, _param(c, "event_cap") / _param(c, "rate"), 0.2, 1.4), "prefiled": rng.random() < 0.85}
            for _ in range(rng.randint(1, 7))
        ]
    },
    "8": lambda rng, c: {"usd_sales": _scaled(rng, _first_tier(c), 0.6, 5)},
    "9": lambda rng, c: {"fees": _scaled(rng, _param(c, "lifetime_cap") / _param(c, "rate"), 0.3, 0.9)},
    "10": lambda rng, c: {"service_fees": _scaled(rng, _param(c, "annual_cap") / _param(c, "rate"), 0.3, 1.5)},
    "11.1": lambda rng, c: {
        "usd_exports": _scaled(rng, _param(c, "min_exports"), 0.6, 3),
        "build_cost": _scaled(rng, _param(c, "cap") / _param(c, "rate"), 0.3, 1.5),
        "years_operating": rng.choice((0.5, 1, 2, 3)),
    },
    "11.2": lambda rng, c: {
        "usd_sales": _scaled(rng, _param(c, "min_sales"), 0.6, 3),
        "storage_cost": _scaled(rng, _param(c, "annual_cap") / _param(c, "rate"), 0.2, 1.3),
    },
    "12": lambda rng, c: {"online_sales": _scaled(rng, _first_tier(c), 0.6, 12)},
    "13": lambda rng, c: {"title": rng.choice(c.facts["title"].choices).key},
}


def declaration(ent: Enterprise, year: int, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """(template target, JSON instance) for one enterprise's declaration of one year."""
    base = common(year, None, ent.n)
    base.update(enterprise_name=ent.name, credit_code=ent.credit_code, contact=ent.contact,
                mobile=ent.mobile, bank_account_name=ent.name,
                bank_account="2010" + "".join(rng.choice("0123456789") for _ in range(11)))
    if rng.random() < 0.04:  # a few enterprises fall under art. 15
        flag = rng.choice(sorted(n for n in DQ_NAMES if n != "pension_rate"))
        base["attestations"][flag] = True
    elif rng.random() < 0.04:
        base["attestations"]["pension_rate"] = round(rng.uniform(0.3, 0.59), 2)
    articles: dict[str, Any] = {}
    for key in ent.articles:
        art = MODEL.article(key)
        data: dict[str, Any] = {}
        for cid in art.clauses:
            if len(art.clauses) > 1 and rng.random() < 0.3:
                continue  # art. 4 / 11: some declare one part only
            clause = POLICY.clause(cid)
            data.update(article_data(art, clause, MAKERS[cid](rng, clause)))
        if not data:
            clause = POLICY.clause(art.clauses[0])
            data = article_data(art, clause, MAKERS[clause.id](rng, clause))
        articles[art.key] = data
    target = "all" if len(articles) > 1 else next(iter(articles))
    return target, {"policy": POLICY.key, "template_version": MODEL.template_version,
                    "common": base, "articles": articles}


# --- wrong and hostile files -------------------------------------------------------------


def _first_numeric(target: str, articles: Mapping[str, Any]) -> tuple[str, str]:
    for key in articles:
        for f in MODEL.article(key).fields:
            if f.type in ("money", "usd", "number") and f.required:
                return f.sheet, f.cell
    f = next(f for f in MODEL.common if f.key == "year")
    return f.sheet, f.cell


def spoil(path: Path, kind: str, instance: Mapping[str, Any]) -> None:
    """Make one kind of mistake an enterprise makes, in a filled declaration."""
    import openpyxl  # the demo's file edits; the engine does not need it

    wb = openpyxl.load_workbook(path)
    cover = wb[MODEL.cover_sheet]
    by_key = {f.key: f for f in MODEL.common}
    if kind == "number_as_text":
        sheet, cell = _first_numeric("", instance["articles"])
        wb[sheet][cell].value = "60万"
    elif kind == "bad_credit_code":
        f = by_key["credit_code"]
        code = cover[f.cell].value
        cover[f.cell].value = code[:17] + ("1" if code[17] != "1" else "2")
    elif kind == "missing_field":
        cover[by_key["mobile"].cell].value = None
        cover[by_key["contact"].cell].value = None
    elif kind == "formula":
        sheet, cell = _first_numeric("", instance["articles"])
        wb[sheet][cell].value = "=SUM(1,2)*7"
    elif kind == "inserted_row":
        key = next(iter(instance["articles"]))
        wb[MODEL.article(key).sheet].insert_rows(6)
    wb.save(path)


SPOILS = ("number_as_text", "bad_credit_code", "missing_field", "formula", "inserted_row")
HOSTILE = ("CORRUPT_WORKBOOK", "NOT_A_WORKBOOK:csv", "ZIP_BOMB", "XML_ENTITIES", "LEGACY_XLS", "ENCRYPTED_WORKBOOK")


# --- the run ---------------------------------------------------------------------------------


def prepare(out: Path) -> None:
    """Use ``out`` only if it is new, empty or an earlier demo's folder (never delete other data)."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise LanxiError(
                "DEMO_FOLDER_NOT_EMPTY",
                f"演示输出文件夹 {out} 已存在且不是演示生成的，为免覆盖已有文件，请换一个文件夹（--out）",
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("lanxi-xl demo output; safe to delete\n", encoding="utf-8")


def generate(out: Path, seed: int = 2022, count: int = 50) -> dict[int, list[Path]]:
    """Write every year's returned files under ``out/returns/<year>/``."""
    from .templates import fill

    rng = random.Random(seed)
    people = enterprises(rng, count)
    files: dict[int, list[Path]] = {}
    for y_index, year in enumerate(YEARS):
        folder = out / "returns" / str(year)
        folder.mkdir(parents=True, exist_ok=True)
        made: list[Path] = []
        for ent in people:
            if y_index and rng.random() < 0.15:
                continue  # not every enterprise declares every year
            target, instance = declaration(ent, year, rng)
            path = folder / f"{ent.n:02d}-{ent.name}-{year}.xlsx"
            fill(target, instance, path, MODEL)
            made.append(path)
            if ent.n % 10 == 3 and y_index == 1:
                # the same file sent twice (another name): recorded once
                copy = folder / f"{ent.n:02d}-{ent.name}-{year}-重复提交.xlsx"
                shutil.copyfile(path, copy)
                made.append(copy)
        # a few returns come back wrong, one of each kind
        victims = rng.sample(made, len(SPOILS))
        for kind, path in zip(SPOILS, victims):
            target, instance = _instance_of(path)
            spoil(path, kind, instance)
        if y_index == 0:
            # Two real declarations saved with extras the checker flags but still reads:
            # a macro project (never run) and a link to another workbook (never followed).
            clean = [p for p in made if p not in victims]
            macro_src, linked = rng.sample(clean, 2)
            macro = macro_src.with_suffix(".xlsm")
            rewrite_zip(macro_src, macro, add={"xl/vbaProject.bin": b"\xd0\xcf\x11\xe0demo-vba"})
            macro_src.unlink()
            made[made.index(macro_src)] = macro
            tmp = linked.with_suffix(".tmp")
            rewrite_zip(linked, tmp, add={"xl/externalLinks/externalLink1.xml": b'<?xml version="1.0"?><externalLink/>'})
            tmp.replace(linked)
            hostile_dir = out / "_hostile"
            for label, path in make_all(hostile_dir).items():
                if label in HOSTILE:
                    dest = folder / f"可疑文件-{path.name}"
                    shutil.move(str(path), dest)
                    made.append(dest)
            shutil.rmtree(hostile_dir)
        files[year] = sorted(made)
    return files


def _instance_of(path: Path) -> tuple[str, dict[str, Any]]:
    from .forms import read_workbook

    reading = read_workbook(path, MODEL)
    return reading.target, reading.instance


def run(out: str | Path = "lanxi-demo", seed: int = 2022, count: int = 50,
        echo: Callable[[str], None] = print) -> DemoResult:
    """Generate, check, review and write ledgers; ``echo`` receives the summary lines."""
    from .intake import check_paths
    from .ledger import write_ledger
    from .registry import open_registry
    from .review import format_review, ledger_data, review_folder

    out = Path(out).resolve()
    prepare(out)
    result = DemoResult(out=out, db=out / "registry.sqlite", annotated=out / "annotated")
    echo(f"生成{count}家虚构企业{YEARS[0]}—{YEARS[-1]}年度的申报表（随机种子 {seed}）…")
    result.files = generate(out, seed, count)
    for year in YEARS:
        result.reports[year] = check_paths(result.files[year], annotate_dir=out / "annotated" / str(year))
        result.reviews[year] = review_folder(out / "returns" / str(year), year, result.db)
        with open_registry(result.db) as reg:
            result.ledgers[year] = write_ledger(ledger_data(reg, year), out / f"台账-{year}.xlsx")
        echo(format_review(result.reviews[year]))
    for line in summary(result):
        echo(line)
    return result


def summary(result: DemoResult) -> list[str]:
    from .registry import open_registry
    from .review import ledger_data

    lines = ["", "年度 | 申报文件 | 通过校验 | 有错误 | 可疑/损坏 | 奖励候选 | 发放项 | 发放金额（元）", "---|---|---|---|---|---|---|---"]
    with open_registry(result.db) as reg:  # type: ignore[arg-type]
        for year in YEARS:
            reports = result.reports[year]
            hostile = sum(1 for r in reports if not getattr(r, "instance", None))
            bad = sum(1 for r in reports if not r.valid)
            data = ledger_data(reg, year)
            paid = [r for r in data.rows if r.paid]
            total = sum((r.amount for r in paid), Decimal(0))
            lines.append(
                f"{year} | {len(reports)} | {len(reports) - bad} | {bad - hostile} | {hostile} | "
                f"{len(data.rows)} | {len(paid)} | {total:,.2f}"
            )
    lines += [
        "",
        "去哪里看 / where to look:",
        f"  交回的申报表（含错误与可疑文件）：{result.out / 'returns'}",
        f"  标注了错误的副本（退回企业修改）：{result.annotated}",
        "  台账工作簿：" + "、".join(str(p) for p in result.ledgers.values()),
        f"  台账数据库（SQLite）：{result.db}",
        f"  再次核对某个文件：lanxi-xl check \"{result.out / 'returns' / str(YEARS[0])}\"",
    ]
    return lines
