"""The ``lanxi-xl`` command as a person runs it (a real subprocess of the installed script)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

EXE = shutil.which("lanxi-xl")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [EXE, *args] if EXE else [sys.executable, "-m", "lanxi_xl.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=60)


def test_calc_prints_the_award() -> None:
    out = run("calc", "8", "usd_sales=1200000", "--year", "2023")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "第8条 跨境电商销售奖励：100,000.00元"


def test_a_zero_says_why() -> None:
    out = run("calc", "6", "sales=12000000", "pension_rate=0.5")
    assert out.returncode == 0
    assert "0.00元（不适用" in out.stdout and "未达到60%" in out.stdout
    below = run("calc", "8", "usd_sales=100")
    assert "未达到奖励条件" in below.stdout and "未达到最低档" in below.stdout


def test_calc_explain_prints_the_reasoning_in_chinese() -> None:
    out = run("calc", "3", "office_m2=100", "office_rent=30000", "storage_m2=200", "storage_rent=20000",
              "online_sales=3000000", "months=12", "--year", "2023", "--explain")
    assert out.returncode == 0, out.stderr
    assert "26,400.00元" in out.stdout and "起作用的上限：办公研发部分上限" in out.stdout
    assert "原文：最高不超过12元/㎡•月补助" in out.stdout


def test_calc_list_fact_and_json() -> None:
    out = run("calc", "7", "events=50000,30000", "--json", "--year", "2024")
    data = json.loads(out.stdout)
    assert data["amount"] == "35000.00" and data["status"] == "payable" and data["year"] == 2024


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("calc", "8", "usd_sales=abc"), "NOT_A_NUMBER"),
        (("calc", "8", "usd_sales=1200000", "--year", "2021"), "YEAR_BEFORE_POLICY"),
        (("calc", "1", "land_mu=25", "floor_m2=0", "occupancy=85", "sales=60000000"), "RATE_OUT_OF_RANGE"),
        (("calc", "99"), "UNKNOWN_CLAUSE"),
        (("calc", "8", "1200000"), "BAD_ARGUMENT"),
    ],
)
def test_bad_input_is_a_chinese_error_not_a_traceback(args: tuple[str, ...], code: str) -> None:
    out = run(*args)
    assert out.returncode == 2
    assert f"错误 [{code}]" in out.stderr
    assert "Traceback" not in out.stderr


def test_policy_lists_every_clause() -> None:
    out = run("policy")
    assert out.returncode == 0
    for cite in ("第1条", "第4条第2款", "第11条第1款", "第13条"):
        assert cite in out.stdout
    assert "兰政办发〔2014〕173号" in out.stdout
