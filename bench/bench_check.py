"""Files per second of the declaration checker against two references, in one run.

    python bench/bench_check.py                 # 300 filled single-article forms (all 13 articles)
    python bench/bench_check.py --files 600 --repeat 5
    python bench/bench_check.py --libreoffice   # the same forms saved by LibreOffice, too

* ``check_paths``: the checker, one process, no annotated copies (what ``lanxi-xl check
  DIR`` does minus printing). Every file is screened, guarded, read, compared with its
  template, validated and computed; each run starts with the process's memos empty.
* floor: ``zipfile`` + ``xml.etree.ElementTree`` of the sheet XML the form needs and
  the shared strings, nothing else — no reader can be faster than unzip + parse.
* naive: ``openpyxl.load_workbook`` (via ``forms.read_workbook``) and
  ``jsonschema.validate`` against the committed ``schemas/`` with the validator
  rebuilt on every call, as a first implementation would.

Each is timed over the same files after one warm-up file per template (the checker
builds each template's layout once per process; that one-off cost is printed
separately). The best of ``--repeat`` runs is reported, with the median.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jsonschema  # noqa: E402
import referencing  # noqa: E402
import referencing.jsonschema  # noqa: E402

from lanxi_xl import forms, intake, screen  # noqa: E402
from lanxi_xl.samples import instance_for  # noqa: E402
from lanxi_xl.templates import fill  # noqa: E402

CASES = {  # one payable declaration per article, scaled per file so no two files are equal
    "1": ("1", {"land_mu": 25, "floor_m2": 0, "occupancy": 0.9, "sales": 60000000}),
    "2": ("2", {"level": "national"}),
    "3": ("3", {"office_m2": 100, "office_rent": 15000, "storage_m2": 0, "storage_rent": 0,
                "online_sales": 1000000, "months": 12}),
    "4": ("4.1", {"investment": 500000}),
    "5": ("5", {"service_revenue": 500000}),
    "6": ("6", {"sales": 12000000}),
    "7": ("7", {"events": [{"cost": 30000}, {"cost": 20000}]}),
    "8": ("8", {"usd_sales": 1200000}),
    "9": ("9", {"fees": 10000}),
    "10": ("10", {"service_fees": 60000}),
    "11": ("11.1", {"usd_exports": 200000, "build_cost": 1000000, "years_operating": 1}),
    "12": ("12", {"online_sales": 6000000}),
    "13": ("13", {"title": "电商镇"}),
}


def make_forms(folder: Path, count: int) -> list[Path]:
    keys = list(CASES)
    paths = []
    for i in range(count):
        article = keys[i % len(keys)]
        clause, facts = CASES[article]
        scaled = {k: (v + i if isinstance(v, int) and k not in ("months", "years_operating") else v)
                  for k, v in facts.items()}
        paths.append(fill(article, instance_for(clause, scaled, 2023, n=i + 1), folder / f"{i:04d}-art-{article}.xlsx"))
    return paths


def floor(paths: Sequence[Path]) -> None:
    """Unzip and parse the sheet XML a form needs and the shared strings: the least any reader does."""
    for path in paths:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            for part in ("xl/worksheets/sheet1.xml", "xl/worksheets/sheet2.xml", "xl/sharedStrings.xml"):
                if part in names:
                    ET.fromstring(zf.read(part))


def naive(paths: Sequence[Path]) -> None:
    """openpyxl reading, then jsonschema.validate against schemas/ (validator rebuilt per call)."""
    folder = ROOT / "schemas" / forms.schema_dir(forms.load_model())
    for path in paths:
        reading = forms.read_workbook(path)
        schemas = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
        registry = referencing.Registry().with_resources(
            (s["$id"], referencing.Resource.from_contents(s, referencing.jsonschema.DRAFT202012)) for s in schemas)
        top = next(s for s in schemas if s["$id"].endswith(f"/{forms.target_name(reading.target)}.json"))
        jsonschema.validate(reading.instance, top, cls=jsonschema.Draft202012Validator, registry=registry)


def checker(paths: Sequence[Path]) -> None:
    # Each run is a first batch: the memos of a process (valid values, parts inflated,
    # shared strings read) start empty, so a repeat is not helped by the run before.
    forms._VALID_SCALARS.clear()
    screen._SEEN.clear()
    intake._SI_TEXTS.clear()
    reports = intake.check_paths(paths)
    bad = [r for r in reports if not r.valid]
    assert not bad, [(r.name, [e.line() for e in r.errors]) for r in bad[:3]]


def timed(fn: Callable[[Sequence[Path]], None], paths: Sequence[Path], repeat: int) -> tuple[float, float]:
    rates = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn(paths)
        rates.append(len(paths) / (time.perf_counter() - started))
    return max(rates), statistics.median(rates)


def machine() -> str:
    uname = " ".join(platform.uname()[:3] + (platform.uname().machine,))
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    import openpyxl
    import python_calamine

    return (f"`{uname}`, `nproc` = {nproc}, Python {platform.python_version()}, openpyxl {openpyxl.__version__}, "
            f"python-calamine {getattr(python_calamine, '__version__', '0.9.1')}, jsonschema "
            f"{__import__('importlib.metadata').metadata.version('jsonschema')}. Date: {dt.date.today():%Y-%m-%d}.")


def run(label: str, paths: list[Path], repeat: int, naive_files: int) -> list[str]:
    started = time.perf_counter()
    intake.check_paths(paths[: len(CASES)])  # one file per template: the layouts are built here, once
    warm = time.perf_counter() - started
    rows = []
    best, median = timed(checker, paths, repeat)
    floor_best, floor_median = timed(floor, paths, repeat)
    naive_best, naive_median = timed(naive, paths[:naive_files], 1)
    rows.append(f"| {label}: `check_paths` (checker) | {best:,.0f} | {median:,.0f} | {best / floor_best:.2f} |")
    rows.append(f"| {label}: floor (zipfile + ElementTree) | {floor_best:,.0f} | {floor_median:,.0f} | 1.00 |")
    rows.append(f"| {label}: naive (openpyxl + `jsonschema.validate`) | {naive_best:,.0f} | {naive_median:,.0f} | "
                f"{naive_best / floor_best:.2f} |")
    print(f"{label}: first file of each of the {len(CASES)} templates, layouts included: {warm:.2f} s", file=sys.stderr)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--naive-files", type=int, default=60, help="files for the (slow) openpyxl reference")
    parser.add_argument("--libreoffice", action="store_true", help="also bench the forms saved by LibreOffice")
    ns = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        folder = Path(tmp) / "openpyxl"
        folder.mkdir()
        paths = make_forms(folder, ns.files)
        rows = run("filled by `fill`", paths, ns.repeat, ns.naive_files)
        if ns.libreoffice:
            from lanxi_xl.office import convert

            saved = []
            for i in range(0, len(paths), 100):  # one soffice run per 100 files keeps each run short
                saved += convert(paths[i: i + 100], Path(tmp) / "lo", "xlsx", timeout=600)
            rows += run("saved by LibreOffice", saved, ns.repeat, ns.naive_files)
    print(f"Machine: {machine()}\n")
    print("| reader | files/s (best) | files/s (median) | vs floor |")
    print("|---|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
