"""Screening returned files: every hostile kind is named, quickly, without opening it."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from hostile import make_all, minimal_workbook
from lanxi_xl.screen import screen


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_all(tmp_path_factory.mktemp("hostile"))


def test_a_plain_workbook_passes(tmp_path: Path) -> None:
    result = screen(minimal_workbook(tmp_path / "ok.xlsx"))
    assert result.readable and result.kind == "xlsx" and not result.problems


def test_every_hostile_kind_is_named(corpus: dict[str, Path]) -> None:
    for label, path in corpus.items():
        code = label.split(":")[0]
        started = time.perf_counter()
        result = screen(path)
        elapsed = time.perf_counter() - started
        assert code in [p.code for p in result.problems], (label, result)
        assert all(p.message and not p.message.isascii() for p in result.problems)  # Chinese text
        assert elapsed < 5, (label, elapsed)  # bounded work, not a decompression of the bomb


def test_flags_do_not_block_reading(corpus: dict[str, Path]) -> None:
    assert screen(corpus["MACRO_PRESENT"]).readable
    assert screen(corpus["MACRO_PRESENT"]).kind == "xlsm"
    assert screen(corpus["EXTERNAL_LINKS"]).readable
    for code in ("ZIP_BOMB", "XML_ENTITIES", "CORRUPT_WORKBOOK", "ENCRYPTED_WORKBOOK", "LEGACY_XLS"):
        assert not screen(corpus[code]).readable, code


def test_screening_the_bomb_does_not_blow_memory(corpus: dict[str, Path]) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    screen(corpus["ZIP_BOMB"])
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert after - before < 50 * 1024  # KiB: far below the bomb's 200 MB


def test_missing_file(tmp_path: Path) -> None:
    assert screen(tmp_path / "nope.xlsx").problems[0].code == "FILE_UNREADABLE"
