"""`lanxi-xl demo`, the README's main job, run as a new user would (a real subprocess)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest


def run_demo(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "lanxi_xl.cli", "demo", "--out", str(out), "--enterprises", "14", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=300)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("demo") / "lanxi-demo"
    return out, run_demo(out)


def test_demo_runs_and_says_where_to_look(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, done = demo
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "去哪里看" in done.stdout and str(out / "annotated") in done.stdout
    for year in (2023, 2024):
        assert (out / f"台账-{year}.xlsx").is_file()
        assert any((out / "returns" / str(year)).glob("*.xlsx"))
    assert (out / "registry.sqlite").is_file()


def test_demo_ledgers_agree_with_the_registry(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = demo
    db = sqlite3.connect(out / "registry.sqlite")
    for year in (2023, 2024):
        (paid_fen,) = db.execute(
            "SELECT COALESCE(SUM(amount_fen), 0) FROM awards WHERE year = ? AND paid = 1", (year,)
        ).fetchone()
        ws = openpyxl.load_workbook(out / f"台账-{year}.xlsx")["台账"]
        header = [c.value for c in ws[1]]
        paid_col, amount_col = header.index("是否发放") + 1, header.index("核定金额（元）") + 1
        paid = sum(
            Decimal(str(ws.cell(r, amount_col).value))
            for r in range(2, ws.max_row + 1)
            if ws.cell(r, paid_col).value == "是"
        )
        assert paid == Decimal(paid_fen) / 100
        assert paid_fen > 0


def test_demo_reports_wrong_and_hostile_files(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, done = demo
    annotated = list((out / "annotated").rglob("*.xlsx"))
    assert annotated, "wrong declarations get annotated copies"
    db = sqlite3.connect(out / "registry.sqlite")
    invalid = {name for (name,) in db.execute("SELECT file_name FROM declarations WHERE valid = 0")}
    assert any("zip-bomb" in n for n in invalid) and any("csv-renamed" in n for n in invalid)
    assert len(invalid) >= 10  # 5 kinds of mistakes a year + hostile files


def test_demo_refuses_to_overwrite_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me", encoding="utf-8")
    done = run_demo(tmp_path)
    assert done.returncode == 2 and "DEMO_FOLDER_NOT_EMPTY" in done.stderr
    assert (tmp_path / "mine.txt").read_text(encoding="utf-8") == "keep me"
