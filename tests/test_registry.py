"""The registry and the review rules that span declarations and years (issue #6).

Every test uses a real SQLite file on disk and real JSON declaration files in a folder,
reviewed the way ``lanxi-xl review`` does it.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
import signal
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from declarations import credit_code, declare

from lanxi_xl.errors import InputError, LanxiError
from lanxi_xl.history import import_history, parse_clause
from lanxi_xl.registry import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Decision,
    normalize_credit_code,
    open_registry,
)
from lanxi_xl.review import PAUSE_ENV, PAUSE_MARK, review_folder, stored_decisions

ROOT = Path(__file__).resolve().parents[1]


def review(db: Path, folder: Path, year: int):
    return review_folder(folder, year, db)


def decisions(db: Path, year: int) -> dict[tuple[str, str], Decision]:
    """The year's decisions keyed by (file, clause)."""
    return {(s.claim.file_name, s.claim.clause_id): s.decision for s in stored_decisions(db, year)}


def one(db: Path, year: int, file: str, clause: str) -> Decision:
    return decisions(db, year)[(file, clause)]


def yuan(text: str) -> Decimal:
    return Decimal(text)


# --- the registry file --------------------------------------------------------------------


def test_registry_is_a_migrated_sqlite_file_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    with open_registry(db) as reg:
        assert reg.schema_version() == SCHEMA_VERSION == MIGRATIONS[-1].version
        assert reg.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert reg.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    # Opening again applies nothing twice.
    with open_registry(db) as reg:
        rows = reg.conn.execute("SELECT version FROM schema_version").fetchall()
        assert [r[0] for r in rows] == [m.version for m in MIGRATIONS]
    tables = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"enterprises", "declarations", "claims", "awards", "history", "schema_version"} <= tables


def test_money_is_integer_fen_never_real(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    declare(folder, "a.json", 1, 2023, [("10", {"service_fees": "12345.67"})])
    db = tmp_path / "reg.sqlite"
    review(db, folder, 2023)
    con = sqlite3.connect(db)
    assert con.execute("SELECT typeof(amount_fen), amount_fen FROM awards").fetchone() == ("integer", 617284)
    assert one(db, 2023, "a.json", "10").amount == yuan("6172.84")


def test_a_registry_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    with open_registry(db):
        pass
    con = sqlite3.connect(db)
    con.execute("INSERT INTO schema_version VALUES (99, 'future', '2099-01-01')")
    con.commit()
    con.close()
    with pytest.raises(LanxiError) as info:
        with open_registry(db):
            pass
    assert info.value.code == "REGISTRY_TOO_NEW"


def test_a_file_that_is_not_a_registry_is_refused_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "notes.sqlite"
    db.write_bytes(b"this is not a database" * 100)
    before = db.read_bytes()
    with pytest.raises(LanxiError) as info:
        with open_registry(db):
            pass
    assert info.value.code == "REGISTRY_UNREADABLE" and "不是有效的台账数据库" in info.value.message
    assert db.read_bytes() == before


@pytest.mark.parametrize(
    ("raw", "code"),
    [("", "CREDIT_CODE_MISSING"), ("91330781MA2OOOOOOO", "CREDIT_CODE_INVALID"), ("123", "CREDIT_CODE_INVALID")],
)
def test_credit_codes_are_checked(raw: str, code: str) -> None:
    with pytest.raises(InputError) as info:
        normalize_credit_code(raw)
    assert info.value.code == code


def test_credit_code_check_character() -> None:
    good = credit_code(7)
    assert normalize_credit_code(f" {good.lower()} ") == good
    wrong = good[:17] + ("0" if good[17] != "0" else "1")
    with pytest.raises(InputError) as info:
        normalize_credit_code(wrong)
    assert info.value.code == "CREDIT_CODE_CHECKSUM"


def test_registry_and_review_do_not_import_openpyxl() -> None:
    code = ("import sys, lanxi_xl.registry, lanxi_xl.review, lanxi_xl.history;"
            "sys.exit(1 if 'openpyxl' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


# --- one-time awards across years ------------------------------------------------------------

PARK = {"land_mu": 25, "floor_m2": 0, "occupancy": "0.85", "sales": 60000000}


def test_art1_is_paid_once_ever(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    declare(tmp_path / "2022", "park.json", 1, 2022, [("1", PARK)])
    declare(tmp_path / "2023", "park.json", 1, 2023, [("1", PARK)])
    declare(tmp_path / "2023", "other.json", 2, 2023, [("1", PARK)])
    review(db, tmp_path / "2022", 2022)
    review(db, tmp_path / "2023", 2023)
    assert one(db, 2022, "park.json", "1").paid
    again = one(db, 2023, "park.json", "1")
    assert not again.paid and again.outcome == "once_paid" and again.amount == 0
    assert "一次性奖励" in again.reason and "2022年" in again.reason and "300,000.00元" in again.reason
    assert one(db, 2023, "other.json", "1").paid  # another enterprise is not affected


def test_art2_once_per_level_national_after_provincial_in_full(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    declare(tmp_path / "2022", "p.json", 1, 2022, [("2", {"level": "省级"})])
    declare(tmp_path / "2023", "p.json", 1, 2023, [("2", {"level": "provincial"})])
    declare(tmp_path / "2023", "n.json", 1, 2023, [("2", {"level": "国家级（部门）"})])
    review(db, tmp_path / "2022", 2022)
    review(db, tmp_path / "2023", 2023)
    assert one(db, 2022, "p.json", "2").amount == yuan("200000.00")
    twice = one(db, 2023, "p.json", "2")
    assert twice.outcome == "once_paid" and "省级" in twice.reason
    national = one(db, 2023, "n.json", "2")
    assert national.paid and national.amount == yuan("500000.00")


def test_art4_each_clause_once(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    declare(tmp_path / "2022", "a.json", 1, 2022, [("4.1", {"investment": 1000000})])
    declare(tmp_path / "2023", "a.json", 1, 2023, [("4.1", {"investment": 2000000}), ("4.2", {"platform_sales": 40000000})])
    declare(tmp_path / "2024", "a.json", 1, 2024, [("4.2", {"platform_sales": 50000000})])
    for y in (2022, 2023, 2024):
        review(db, tmp_path / str(y), y)
    assert one(db, 2022, "a.json", "4.1").amount == yuan("200000.00")
    assert one(db, 2023, "a.json", "4.1").outcome == "once_paid"
    assert one(db, 2023, "a.json", "4.2").amount == yuan("100000.00")
    assert one(db, 2024, "a.json", "4.2").outcome == "once_paid"


def test_art11_build_once_use_per_year_with_cap_across_declarations(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    build = {"usd_exports": 300000, "build_cost": 1000000, "years_operating": 2}
    declare(tmp_path / "2022", "b.json", 1, 2022, [("11.1", build)])
    declare(tmp_path / "2023", "b.json", 1, 2023, [("11.1", build)])
    declare(tmp_path / "2023", "u1.json", 1, 2023, [("11.2", {"usd_sales": 200000, "storage_cost": 750000})])
    declare(tmp_path / "2023", "u2.json", 1, 2023, [("11.2", {"usd_sales": 200000, "storage_cost": 500000})])
    declare(tmp_path / "2023", "u3.json", 1, 2023, [("11.2", {"usd_sales": 200000, "storage_cost": 100000})])
    review(db, tmp_path / "2022", 2022)
    review(db, tmp_path / "2023", 2023)
    assert one(db, 2022, "b.json", "11.1").amount == yuan("300000.00")
    assert one(db, 2023, "b.json", "11.1").outcome == "once_paid"
    assert one(db, 2023, "u1.json", "11.2").amount == yuan("150000.00")
    second = one(db, 2023, "u2.json", "11.2")
    assert second.outcome == "reduced" and second.computed == yuan("100000.00") and second.amount == yuan("50000.00")
    assert second.binding_cap == "每家企业每年上限（本年度累计）" and "u1.json" in second.reason
    third = one(db, 2023, "u3.json", "11.2")
    assert not third.paid and third.outcome == "yearly_cap" and "额度已用完" in third.reason


def test_art13_once_per_title(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    declare(tmp_path / "2022", "t.json", 1, 2022, [("13", {"title": "省级电商镇"})])
    declare(tmp_path / "2023", "t.json", 1, 2023, [("13", {"title": "town"}), ("13", {"title": "示范村"})])
    review(db, tmp_path / "2022", 2022)
    review(db, tmp_path / "2023", 2023)
    rows = stored_decisions(db, 2023)
    assert [(r.decision.choice, r.decision.outcome, r.decision.amount) for r in rows] == [
        ("town", "once_paid", 0),
        ("village", "paid", yuan("100000.00")),
    ]
    assert "「省级电商镇」已于2022年发放200,000.00元" in rows[0].decision.reason


# --- art. 3: three consecutive years, and the yearly cap -------------------------------------

RENT = {"office_m2": 100, "office_rent": 30000, "storage_m2": 200, "storage_rent": 20000,
        "online_sales": 3000000, "months": 12}


def test_art3_paid_for_three_consecutive_years_not_the_fourth(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    for y in (2022, 2023, 2024, 2025):
        declare(tmp_path / str(y), "rent.json", 1, y, [("3", RENT)])
        review(db, tmp_path / str(y), y)
    for y in (2022, 2023, 2024):  # 2024: the boundary year, the third of the window
        d = one(db, y, "rent.json", "3")
        assert d.paid and d.amount == yuan("26400.00"), (y, d.reason)
    assert "本年为第3年" in one(db, 2024, "rent.json", "3").reason
    last = one(db, 2025, "rent.json", "3")
    assert not last.paid and last.outcome == "window_over"
    assert "2022—2024年" in last.reason and "2025年已超出补助期" in last.reason


def test_art3_window_is_calendar_years_from_first_payment_even_with_a_gap(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    for y in (2022, 2024, 2025):
        declare(tmp_path / str(y), "rent.json", 1, y, [("3", RENT)])
        review(db, tmp_path / str(y), y)
    assert one(db, 2024, "rent.json", "3").paid
    assert one(db, 2025, "rent.json", "3").outcome == "window_over"


def test_art3_window_starts_with_the_first_year_actually_paid(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    too_small = {**RENT, "online_sales": 1000}  # below 1万元/㎡·年: not paid, does not start the window
    declare(tmp_path / "2022", "rent.json", 1, 2022, [("3", too_small)])
    for y in (2023, 2024, 2025):
        declare(tmp_path / str(y), "rent.json", 1, y, [("3", RENT)])
    for y in (2022, 2023, 2024, 2025):
        review(db, tmp_path / str(y), y)
    assert one(db, 2022, "rent.json", "3").outcome == "below_threshold"
    assert all(one(db, y, "rent.json", "3").paid for y in (2023, 2024, 2025))


def test_art3_yearly_cap_across_two_declarations(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    big = {"office_m2": 600, "office_rent": 100000, "storage_m2": 0, "storage_rent": 0,
           "online_sales": 9000000, "months": 12}  # 80,000.00 each
    declare(tmp_path / "2023", "h1.json", 1, 2023, [("3", big)])
    declare(tmp_path / "2023", "h2.json", 1, 2023, [("3", {**big, "office_rent": 110000})], file_name="下半年.xlsx")
    review(db, tmp_path / "2023", 2023)
    assert one(db, 2023, "h1.json", "3").amount == yuan("80000.00")
    second = one(db, 2023, "下半年.xlsx", "3")
    assert second.outcome == "reduced" and second.computed == yuan("86400.00") and second.amount == yuan("20000.00")
    assert second.binding_cap == "每年补助上限（本年度累计）"


# --- art. 9: the lifetime total -----------------------------------------------------------------


def test_art9_trademark_total_reached_across_two_years(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    declare(tmp_path / "2022", "tm.json", 1, 2022, [("9", {"fees": 20000})])
    # The enterprise declares it received nothing before: the registry knows better.
    declare(tmp_path / "2023", "tm.json", 1, 2023, [("9", {"fees": 20000, "received_before": 0})])
    declare(tmp_path / "2024", "tm.json", 1, 2024, [("9", {"fees": 5000})])
    for y in (2022, 2023, 2024):
        review(db, tmp_path / str(y), y)
    assert one(db, 2022, "tm.json", "9").amount == yuan("14000.00")
    second = one(db, 2023, "tm.json", "9")
    assert second.paid and second.computed == yuan("6000.00") and second.amount == yuan("6000.00")
    assert second.binding_cap == "单个企业扶持总额剩余额度"
    assert "台账记录为14,000.00元" in second.reason and "按台账记录计算" in second.reason
    third = one(db, 2024, "tm.json", "9")
    assert not third.paid and third.outcome == "lifetime_total" and "额度已用完" in third.reason


def test_art9_two_declarations_in_one_year_share_the_total(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    declare(tmp_path / "2023", "a.json", 1, 2023, [("9", {"fees": 20000})])
    declare(tmp_path / "2023", "b.json", 1, 2023, [("9", {"fees": 10000})])
    review(db, tmp_path / "2023", 2023)
    assert one(db, 2023, "a.json", "9").amount == yuan("14000.00")
    assert one(db, 2023, "b.json", "9").amount == yuan("6000.00")


# --- yearly caps across declarations ------------------------------------------------------------


def test_art7_and_art10_yearly_caps_across_declarations(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    folder = tmp_path / "2023"
    declare(folder, "e1.json", 1, 2023, [("7", {"events": [{"cost": 40000}] * 4})])  # 80,000
    declare(folder, "e2.json", 1, 2023, [("7", {"events": [{"cost": 40000}] * 2})])  # 40,000 → 20,000
    declare(folder, "e3.json", 2, 2023, [("7", {"events": [{"cost": 40000}] * 2})])  # another body: full
    declare(folder, "m1.json", 1, 2023, [("10", {"service_fees": 60000})])  # 30,000
    declare(folder, "m2.json", 1, 2023, [("10", {"service_fees": 60000})], file_name="m2-重新提交.xlsx")
    review(db, folder, 2023)
    assert one(db, 2023, "e1.json", "7").amount == yuan("80000.00")
    e2 = one(db, 2023, "e2.json", "7")
    assert e2.outcome == "reduced" and e2.amount == yuan("20000.00") and e2.binding_cap == "每家机构每年上限（本年度累计）"
    assert one(db, 2023, "e3.json", "7").amount == yuan("40000.00")
    assert one(db, 2023, "m1.json", "10").amount == yuan("30000.00")
    m2 = one(db, 2023, "m2-重新提交.xlsx", "10")
    # Same enterprise, clause, year and figures as m1: the same declaration sent twice.
    assert m2.outcome == "duplicate" and "m1.json" in m2.reason


def test_per_year_clause_pays_once_a_year(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    declare(tmp_path / "2023", "a.json", 1, 2023, [("5", {"service_revenue": 600000})])
    declare(tmp_path / "2023", "b.json", 1, 2023, [("5", {"service_revenue": 800000})])
    declare(tmp_path / "2024", "a.json", 1, 2024, [("5", {"service_revenue": 600000})])
    review(db, tmp_path / "2023", 2023)
    review(db, tmp_path / "2024", 2024)
    assert one(db, 2023, "a.json", "5").paid
    b = one(db, 2023, "b.json", "5")
    assert b.outcome == "duplicate" and "每年奖励一次" in b.reason
    assert one(db, 2024, "a.json", "5").paid  # art. 5 is per year (interpretation art5-lump-sum-per-year)


# --- art. 14 and art. 15 ------------------------------------------------------------------------


def test_art14_same_sales_pays_only_the_highest_per_enterprise_and_year(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    folder = tmp_path / "2023"
    declare(folder, "live.json", 1, 2023, [("6", {"sales": 12000000})])  # 100,000
    declare(folder, "cross.json", 1, 2023, [("8", {"usd_sales": 2500000})])  # 200,000
    declare(folder, "agri.json", 1, 2023, [("12", {"online_sales": 6000000})])  # 100,000
    declare(folder, "other.json", 2, 2023, [("6", {"sales": 12000000}), ("9", {"fees": 1000})])
    review(db, folder, 2023)
    assert one(db, 2023, "cross.json", "8").amount == yuan("200000.00")
    for f, c in (("live.json", "6"), ("agri.json", "12")):
        d = one(db, 2023, f, c)
        assert not d.paid and d.outcome == "overlap" and d.computed == yuan("100000.00")
        assert "就高不重复" in d.reason and "第8条" in d.reason
    assert one(db, 2023, "other.json", "6").paid  # another enterprise
    assert one(db, 2023, "other.json", "9").paid  # not in the group


def test_art14_is_per_year(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    declare(tmp_path / "2022", "a.json", 1, 2022, [("8", {"usd_sales": 600000})])
    declare(tmp_path / "2023", "a.json", 1, 2023, [("6", {"sales": 6000000})])
    review(db, tmp_path / "2022", 2022)
    review(db, tmp_path / "2023", 2023)
    assert one(db, 2022, "a.json", "8").paid and one(db, 2023, "a.json", "6").paid


def test_art15_in_one_declaration_disqualifies_the_enterprise_for_the_year(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    declare(tmp_path / "2023", "a.json", 1, 2023, [("8", {"usd_sales": 1200000})], answers={"dishonest": "否"})
    declare(tmp_path / "2023", "b.json", 1, 2023, [("10", {"service_fees": 10000})], answers={"dishonest": "是"})
    declare(tmp_path / "2023", "c.json", 2, 2023, [("10", {"service_fees": 10000})], answers={"pension_rate": "55%"})
    declare(tmp_path / "2024", "a.json", 1, 2024, [("8", {"usd_sales": 1200000})])
    review(db, tmp_path / "2023", 2023)
    review(db, tmp_path / "2024", 2024)
    a = one(db, 2023, "a.json", "8")
    assert not a.paid and a.outcome == "not_applicable" and a.computed == 0
    assert "被列为失信企业" in a.reason and "b.json" in a.reason
    assert one(db, 2023, "b.json", "10").outcome == "not_applicable"
    c = one(db, 2023, "c.json", "10")
    assert c.outcome == "not_applicable" and "参保率55%" in c.reason
    assert one(db, 2024, "a.json", "8").paid


# --- history -------------------------------------------------------------------------------------

HEAD = ["统一社会信用代码", "企业名称", "年度", "条款", "金额", "称号/级别", "备注"]


def write_csv(path: Path, rows: list[list[object]], encoding: str = "utf-8-sig") -> Path:
    with path.open("w", encoding=encoding, newline="") as fh:
        csv.writer(fh).writerows([HEAD, *rows])
    return path


def write_xlsx(path: Path, rows: list[list[object]]) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEAD)
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


def test_history_counts_for_once_only_and_lifetime_rules(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    hist = write_xlsx(tmp_path / "已发放.xlsx", [
        [credit_code(1), "兰溪甲公司", 2022, "第1条", 300000, None, "2022年已发放"],
        [credit_code(1), "兰溪甲公司", 2022, "9", 14000, None, None],
        [credit_code(1), "兰溪甲公司", 2022, "第2条", 200000, "省级", None],
    ])
    result = import_history(hist, db)
    assert (result.rows_read, result.rows_added, result.already_imported) == (3, 3, False)
    declare(tmp_path / "2023", "a.json", 1, 2023, [("1", PARK), ("9", {"fees": 20000}), ("2", {"level": "省级"})])
    review(db, tmp_path / "2023", 2023)
    art1 = one(db, 2023, "a.json", "1")
    assert art1.outcome == "once_paid" and "历史记录 已发放.xlsx 第2行" in art1.reason
    assert one(db, 2023, "a.json", "9").amount == yuan("6000.00")
    assert one(db, 2023, "a.json", "2").outcome == "once_paid"
    # Importing the same file again adds nothing.
    again = import_history(hist, db)
    assert again.already_imported and again.rows_added == 0


def test_history_of_art3_starts_the_window(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    import_history(write_csv(tmp_path / "h.csv", [
        [credit_code(1), "兰溪甲公司", 2022, "3", "26400", "", ""],
        [credit_code(1), "兰溪甲公司", 2023, "3", "26400", "", ""],
        [credit_code(1), "兰溪甲公司", 2024, "3", "26400", "", ""],
    ]), db)
    declare(tmp_path / "2025", "rent.json", 1, 2025, [("3", RENT)])
    review(db, tmp_path / "2025", 2025)
    assert one(db, 2025, "rent.json", "3").outcome == "window_over"


def test_history_csv_in_gbk_as_excel_saves_it(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    path = write_csv(tmp_path / "gbk.csv", [[credit_code(3), "兰溪丙公司", 2022, "4.1", "100000", "", "手工发放"]],
                     encoding="gb18030")
    assert import_history(path, db).rows_added == 1
    with open_registry(db) as reg:
        assert [(h.clause_id, h.amount, h.note) for h in reg.history()] == [("4.1", yuan("100000.00"), "手工发放")]


def test_history_import_after_review_redecides_that_year(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    declare(tmp_path / "2023", "a.json", 1, 2023, [("1", PARK)])
    review(db, tmp_path / "2023", 2023)
    assert one(db, 2023, "a.json", "1").paid
    result = import_history(write_csv(tmp_path / "h.csv", [[credit_code(1), "甲", 2022, "1", "300000", "", ""]]), db)
    assert result.years_redecided == (2023,)
    assert one(db, 2023, "a.json", "1").outcome == "once_paid"


def test_bad_history_rows_are_all_reported_and_nothing_is_imported(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    import_history(write_csv(tmp_path / "good.csv", [[credit_code(1), "甲", 2022, "8", "50000", "", ""]]), db)
    bad = write_csv(tmp_path / "bad.csv", [
        [credit_code(2), "乙", 2022, "8", "50000", "", ""],  # fine
        ["91330781MA2OOOOOOO", "乙", 2022, "8", "50000", "", ""],  # row 3: bad code
        [credit_code(2), "乙", 2021, "8", "50000", "", ""],  # row 4: before the policy
        [credit_code(2), "乙", 2022, "4", "50000", "", ""],  # row 5: art. 4 has two clauses
        [credit_code(2), "乙", 2022, "2", "200000", "", ""],  # row 6: level missing
        [credit_code(2), "乙", 2022, "8", "5万", "", ""],  # row 7: not a number
        [credit_code(2), "乙", 2022, "8", "50000", "", ""],  # row 8: same as row 2
    ])
    with pytest.raises(InputError) as info:
        import_history(bad, db)
    msg = info.value.message
    assert info.value.code == "HISTORY_ROWS_INVALID" and "未导入任何记录" in msg
    for n in (3, 4, 5, 6, 7, 8):
        assert f"第{n}行：" in msg, (n, msg)
    assert "第2行：" not in msg and "与第2行重复" in msg and "4.1、4.2" in msg and "省级" in msg
    with open_registry(db) as reg:
        assert [h.credit_code for h in reg.history()] == [credit_code(1)]
        assert reg.conn.execute("SELECT COUNT(*) FROM history_imports").fetchone()[0] == 1


def test_history_clause_spellings() -> None:
    ids = tuple(policy_for_year(2023).clauses)
    for raw, cid in [("8", "8"), ("第8条", "8"), (" 第 8 条 ", "8"), ("4.1", "4.1"), ("4．1", "4.1"),
                     ("第4条第1款", "4.1"), ("第 11 条 第 2 款", "11.2"), (8, "8"), (8.0, "8")]:
        assert parse_clause(raw, ids) == cid, raw
    with pytest.raises(InputError) as info:
        parse_clause("第4条", ids)
    assert info.value.code == "HISTORY_CLAUSE_AMBIGUOUS" and "4.1、4.2" in info.value.message
    for raw in ("99", "第8章", "8.9", "abc"):
        with pytest.raises(InputError) as info:
            parse_clause(raw, ids)
        assert info.value.code == "HISTORY_CLAUSE", raw


def test_history_clause_cell_of_spaces_is_refused_at_once() -> None:
    # "1" and 20,000 spaces: the expression this replaced backtracked for hours on it (2.8 s
    # at 1,000 spaces, cubic). A real process with a deadline: a match cannot be interrupted.
    code = ("from lanxi_xl.history import parse_clause\nfrom lanxi_xl.errors import InputError\n"
            "from lanxi_xl.policy import policy_for_year\n"
            "try:\n    parse_clause('1' + ' ' * 20000 + 'x', tuple(policy_for_year(2023).clauses))\n"
            "except InputError as e:\n    print(e.code)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "HISTORY_CLAUSE", done.stderr[-2000:]


def test_history_missing_header_is_named(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("统一社会信用代码,企业名称,年份,条款,金额\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        import_history(path, tmp_path / "reg.sqlite")
    assert info.value.code == "HISTORY_HEADER" and "年度" in info.value.message


def test_hostile_history_workbook_is_refused_before_opening(tmp_path: Path) -> None:
    from hostile import make_all

    bomb = make_all(tmp_path / "hostile")["ZIP_BOMB"]
    with pytest.raises(InputError) as info:
        import_history(bomb, tmp_path / "reg.sqlite")
    assert info.value.code == "HISTORY_UNREADABLE" and "压缩炸弹" in info.value.message


# --- idempotency, arrival order, cascade --------------------------------------------------------


def make_batch(folder: Path, count: int = 12) -> None:
    """A year's batch mixing every kind of rule; enterprise n = i % 4 + 1."""
    for i in range(count):
        n = i % 4 + 1
        claims = [
            [("7", {"events": [{"cost": 60000 + i}, {"cost": 30000, "prefiled": "否"}]})],
            [("8", {"usd_sales": 1200000 + i}), ("6", {"sales": 6000000})],
            [("3", {**RENT, "office_rent": 30000 + 1000 * i})],
            [("9", {"fees": 9000 + i})],
        ][i % 4]
        declare(folder, f"{i:02d}-企业{n}.json", n, 2023, claims,
                enterprise="=HYPERLINK(\"http://evil\",\"点我\")" if i == 5 else None)


def test_reviewing_the_same_folder_twice_adds_and_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    make_batch(tmp_path / "in")
    first = review(db, tmp_path / "in", 2023)
    assert (first.recorded, first.already) == (12, 0)
    con = sqlite3.connect(db)
    snapshot = con.execute("SELECT * FROM awards ORDER BY id").fetchall()
    counts = [con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("declarations", "claims", "awards")]
    second = review(db, tmp_path / "in", 2023)
    assert (second.recorded, second.already, second.changed) == (0, 12, 0)
    assert con.execute("SELECT * FROM awards ORDER BY id").fetchall() == snapshot  # same rows, same times
    assert [con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("declarations", "claims", "awards")] == counts
    assert (second.paid, second.total) == (first.paid, first.total)


def test_a_file_added_later_is_a_later_declaration(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    folder = tmp_path / "in"
    declare(folder, "b.json", 1, 2023, [("10", {"service_fees": 60000})])
    review(db, folder, 2023)
    declare(folder, "a.json", 1, 2023, [("10", {"service_fees": 70000})])  # sorts first, arrives later
    review(db, folder, 2023)
    assert one(db, 2023, "b.json", "10").amount == yuan("30000.00")
    assert one(db, 2023, "a.json", "10").amount == yuan("10000.00")


def test_reviewing_an_earlier_year_later_redecides_the_later_years(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    declare(tmp_path / "2023", "a.json", 1, 2023, [("4.1", {"investment": 1000000})])
    review(db, tmp_path / "2023", 2023)
    assert one(db, 2023, "a.json", "4.1").paid
    declare(tmp_path / "2022", "a.json", 1, 2022, [("4.1", {"investment": 600000})])
    result = review(db, tmp_path / "2022", 2022)
    assert result.years_decided == (2022, 2023)
    assert one(db, 2022, "a.json", "4.1").paid
    assert one(db, 2023, "a.json", "4.1").outcome == "once_paid"


def test_invalid_and_unreadable_declarations_are_recorded_not_paid(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    folder = tmp_path / "in"
    declare(folder, "checked-bad.json", 1, 2023, [("8", {"usd_sales": 1200000})], valid=False,
            errors=[{"code": "NOT_A_NUMBER", "message": "「销售额」应为数字，收到“12万”", "cell": "C5"}])
    declare(folder, "typo.json", 2, 2023, [("8", {"usd_sale": 1200000})])
    (folder / "broken.json").write_text("{", encoding="utf-8")
    (folder / "notes.txt").write_text("x", encoding="utf-8")
    result = review(db, folder, 2023)
    assert result.seen == 3 and set(result.invalid) == {"checked-bad.json", "broken.json"}
    assert result.skipped == (("notes.txt", "不支持的文件类型（支持：.json、.xls、.xlsm、.xlsx）"),)
    bad = one(db, 2023, "checked-bad.json", "8")
    assert bad.outcome == "invalid" and "12万" in bad.reason
    typo = one(db, 2023, "typo.json", "8")
    assert typo.outcome == "error" and "usd_sale" in typo.reason
    with open_registry(db) as reg:
        files = {d.file_name: d for d in reg.declarations(2023)}
    assert not files["broken.json"].valid and files["broken.json"].errors[0]["code"] == "NOT_JSON"


# --- the command line, and a review killed halfway -------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lanxi_xl.cli", *args], capture_output=True, text=True,
                          encoding="utf-8", timeout=120, env={**os.environ, **(env or {})}, cwd=cwd or ROOT)


def ledger_values(path: Path) -> dict[str, list[tuple[object, ...]]]:
    wb = openpyxl.load_workbook(path)
    return {ws.title: [tuple(r) for r in ws.iter_rows(values_only=True)] for ws in wb}


def test_review_killed_halfway_then_rerun_equals_a_clean_run(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_batch(folder, 12)
    clean_db, clean_xlsx = tmp_path / "clean.sqlite", tmp_path / "clean.xlsx"
    out = cli("review", str(folder), "--year", "2023", "--db", str(clean_db), "-o", str(clean_xlsx))
    assert out.returncode == 0, out.stderr

    db, xlsx = tmp_path / "reg.sqlite", tmp_path / "ledger.xlsx"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lanxi_xl.cli", "review", str(folder), "--year", "2023", "--db", str(db), "-o", str(xlsx)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", cwd=ROOT,
        env={**os.environ, PAUSE_ENV: "5", "LANXI_XL_PAUSE_SECONDS": "60"},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # blocks until the 5th declaration is committed
        assert line.strip() == PAUSE_MARK, line
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not xlsx.exists()

    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(*) FROM declarations").fetchone()[0] == 5
    assert con.execute("SELECT COUNT(*) FROM awards").fetchone()[0] == 0  # deciding had not started
    assert con.execute("SELECT COUNT(*) FROM reviews WHERE finished_at IS NULL").fetchone()[0] == 1
    con.close()

    out = cli("review", str(folder), "--year", "2023", "--db", str(db), "-o", str(xlsx))
    assert out.returncode == 0, out.stderr
    assert "未完成（已登记5份后中断），本次已补全" in out.stdout
    assert "新登记7份，此前已登记5份" in out.stdout
    assert ledger_values(xlsx) == ledger_values(clean_xlsx)
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM reviews WHERE finished_at IS NULL").fetchone()[0] == 0
    clean = sqlite3.connect(clean_db)
    q = "SELECT credit_code, clause_id, amount_fen, paid, outcome, reason FROM awards ORDER BY claim_id"
    assert con.execute(q).fetchall() == clean.execute(q).fetchall()


def test_cli_review_and_history_errors_are_chinese_not_tracebacks(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    out = cli("review", str(tmp_path / "nowhere"), "--year", "2023", "--db", str(db))
    assert out.returncode == 2 and "错误 [FOLDER_NOT_FOUND]" in out.stderr and "Traceback" not in out.stderr
    (tmp_path / "in").mkdir()
    out = cli("review", str(tmp_path / "in"), "--year", "2021", "--db", str(db))
    assert out.returncode == 2 and "错误 [YEAR_BEFORE_POLICY]" in out.stderr
    bad = write_csv(tmp_path / "h.csv", [[credit_code(1), "甲", 2022, "99", "1", "", ""]])
    out = cli("history", "import", str(bad), "--db", str(db))
    assert out.returncode == 2 and "错误 [HISTORY_ROWS_INVALID]" in out.stderr and "第2行：" in out.stderr
    good = write_csv(tmp_path / "g.csv", [[credit_code(1), "甲", 2022, "1", "300000", "", ""]])
    out = cli("history", "import", str(good), "--db", str(db))
    assert out.returncode == 0 and "已导入 g.csv：1 行" in out.stdout, out.stderr
    out = cli("history", "import", str(good), "--db", str(db))
    assert out.returncode == 0 and "此前已导入" in out.stdout


def test_cli_review_uses_the_db_from_the_environment(tmp_path: Path) -> None:
    declare(tmp_path / "in", "a.json", 1, 2023, [("8", {"usd_sales": 600000})])
    out = cli("review", str(tmp_path / "in"), "--year", "2023", env={"LANXI_XL_DB": str(tmp_path / "env.sqlite")},
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "env.sqlite").exists() and (tmp_path / "兰溪电商奖励台账-2023.xlsx").exists()
    assert "发放1项，合计50,000.00元" in out.stdout


def test_a_declaration_of_another_year_is_recorded_and_reported(tmp_path: Path) -> None:
    db = tmp_path / "reg.sqlite"
    declare(tmp_path / "in", "a.json", 1, 2023, [("8", {"usd_sales": 600000})])
    declare(tmp_path / "in", "old.json", 1, 2022, [("8", {"usd_sales": 600000})])
    result = review(db, tmp_path / "in", 2023)
    assert result.other_years == (("old.json", 2022),) and result.recorded == 2
    assert set(decisions(db, 2023)) == {("a.json", "8")}
    review(db, tmp_path / "in", 2022)
    assert one(db, 2022, "old.json", "8").paid


# --- the rules as properties, over random multi-year batches (pure: no database) ---------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from lanxi_xl.policy import policy_for_year  # noqa: E402
from lanxi_xl.registry import Grant, StoredClaim  # noqa: E402
from lanxi_xl.review import decide_year  # noqa: E402

POLICY = policy_for_year(2023)
money = st.integers(min_value=0, max_value=3_000_000)
FACTS = {
    "1": st.just(PARK),
    "2": st.sampled_from(["国家级", "省级"]).map(lambda v: {"level": v}),
    "3": st.builds(lambda rent, m2: {**RENT, "office_rent": rent, "office_m2": m2, "online_sales": 20_000_000},
                   st.integers(0, 200_000), st.integers(1, 1_500)),
    "4.1": money.map(lambda v: {"investment": v}),
    "6": money.map(lambda v: {"sales": v * 20}),
    "7": st.lists(st.integers(0, 60_000), min_size=1, max_size=8).map(lambda cs: {"events": [{"cost": c} for c in cs]}),
    "8": money.map(lambda v: {"usd_sales": v}),
    "9": st.integers(0, 40_000).map(lambda v: {"fees": v}),
    "10": st.integers(0, 120_000).map(lambda v: {"service_fees": v}),
    "11.2": st.integers(0, 1_500_000).map(lambda v: {"usd_sales": 200_000, "storage_cost": v}),
    "12": money.map(lambda v: {"online_sales": v * 3}),
    "13": st.sampled_from(["省级电商镇", "省级示范村"]).map(lambda v: {"title": v}),
}
claim_st = st.tuples(
    st.integers(2022, 2025), st.integers(1, 3), st.sampled_from(sorted(FACTS)), st.data(), st.booleans()
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(claim_st, min_size=1, max_size=30))
def test_rules_hold_over_random_multi_year_batches(raw: list) -> None:
    claims: list[StoredClaim] = []
    for n, (year, ent, clause_id, d, dishonest) in enumerate(raw, start=1):
        facts = dict(d.draw(FACTS[clause_id]))
        if dishonest and n % 7 == 0:  # now and then an art. 15 disqualification
            facts["dishonest"] = "是"
        claims.append(StoredClaim(n, n, 1, f"f{n}.json", True, (), credit_code(ent), f"企业{ent}", year,
                                  clause_id, facts, f"fp{n}"))
    grants: list[Grant] = []
    decided = []
    for year in sorted({c.year for c in claims}):
        of_year = [c for c in claims if c.year == year]
        first = decide_year(POLICY, year, of_year, grants)
        assert first == decide_year(POLICY, year, of_year, grants)  # deterministic
        for dec in first:
            if dec.paid:
                grants.append(Grant(dec.credit_code, dec.clause_id, year, dec.choice, dec.amount, "x"))
        decided += first

    by_claim = {c.claim_id: c for c in claims}
    paid = [d for d in decided if d.paid]
    for d in decided:
        assert (d.amount > 0) if d.paid else (d.amount == 0), d
        assert d.amount <= d.computed

    def total(rows, key):
        out: dict = defaultdict(Decimal)
        for r in rows:
            out[key(r)] += r.amount
        return out

    def count(rows, key):
        out: dict = defaultdict(int)
        for r in rows:
            out[key(r)] += 1
        return out
    for key, n in count([d for d in paid if d.clause_id in ("1", "4.1")], lambda d: (d.credit_code, d.clause_id)).items():
        assert n == 1, key
    for key, n in count([d for d in paid if d.clause_id in ("2", "13")],
                        lambda d: (d.credit_code, d.clause_id, d.choice)).items():
        assert n == 1, key
    for key, n in count([d for d in paid if d.clause_id in ("6", "8", "12")], lambda d: (d.credit_code, d.year)).items():
        assert n == 1, key  # art. 14: one per enterprise and year in the same-sales group
    lifetime = POLICY.clauses["9"].params["lifetime_cap"].value
    assert all(v <= lifetime for v in total([d for d in paid if d.clause_id == "9"], lambda d: d.credit_code).values())
    for cid in ("3", "7", "10", "11.2"):
        cap = POLICY.clauses[cid].params[POLICY.clauses[cid].payable.yearly_cap].value
        for key, v in total([d for d in paid if d.clause_id == cid], lambda d: (d.credit_code, d.year)).items():
            assert v <= cap, (cid, key, v)
    years3: dict = defaultdict(set)
    for d in paid:
        if d.clause_id == "3":
            years3[d.credit_code].add(d.year)
    window = POLICY.clauses["3"].payable.years
    assert all(max(ys) - min(ys) < window for ys in years3.values())
    for d in paid:
        same = [c for c in claims if c.credit_code == d.credit_code and c.year == d.year]
        assert not any(c.facts.get("dishonest") == "是" for c in same), d
    assert {d.claim_id for d in decided} == set(by_claim)
