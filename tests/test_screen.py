"""Screening returned files: every hostile kind is named, quickly, without opening it."""

from __future__ import annotations

import io
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


def _swap_part_bytes(data: bytes, name: str, content: bytes) -> bytes:
    """``data`` with part ``name``'s compressed bytes replaced by ``content`` deflated and
    padded to the same length: the zip directory (name, sizes, CRC-32) stays as it was,
    so only the bytes themselves tell the two files apart."""
    import struct
    import zipfile
    import zlib

    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = packer.compress(content) + packer.flush()
    assert len(deflated) <= info.compress_size, "pick shorter content"
    deflated += b"\0" * (info.compress_size - len(deflated))  # after the final block: ignored by inflate
    return data[:start] + deflated + data[start + info.compress_size:]


@pytest.mark.parametrize("part", ["xl/theme/theme1.xml", "xl/styles.xml"])
def test_parts_remembered_across_files_are_matched_by_their_bytes(tmp_path: Path, part: str) -> None:
    # Screening keeps what it inflated of parts shared by a batch's files (theme, styles).
    # A later file with the same directory entry (name, sizes, CRC) but other bytes must
    # be inflated afresh: here an entity declaration hidden behind a copied directory.
    from lanxi_xl.screen import BytesZip

    good = minimal_workbook(tmp_path / "good.xlsx").read_bytes()
    evil = _swap_part_bytes(good, part, b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')
    for data in (good, good):  # the second time from what was remembered
        result = screen(tmp_path / "good.xlsx", data, BytesZip(data))
        assert result.readable and not result.problems
    result = screen(tmp_path / "evil.xlsx", evil, BytesZip(evil))
    assert [p.code for p in result.problems] == ["XML_ENTITIES"]
    assert part in result.problems[0].message


def test_memo_forgets_rather_than_grows() -> None:
    from lanxi_xl.screen import Memo

    memo = Memo(entries=4, size=1000)
    for i in range(4):
        memo.put(i, "x", 100)
    assert len(memo) == 4 and memo.held == 400
    memo.put(4, "x", 100)  # a fifth entry: all forgotten, then kept
    assert list(memo.data) == [4] and memo.held == 100
    memo.put(5, "x", 950)  # more than an eighth of the budget: not kept at all
    assert 5 not in memo and memo.held == 100
    for i in range(6, 14):
        memo.put(i, "x", 120)  # the byte budget, not the count, runs out first
        assert memo.held <= 1000


def test_a_batch_of_distinct_parts_keeps_the_memo_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every file with its own 60 KB styles part: screened one after the other (2.7 MB in
    # all, here against a 2 MB budget), the memo of inflated parts never holds more.
    import random

    from lanxi_xl import screen as screening
    from lanxi_xl.samples import rewrite_zip
    from lanxi_xl.screen import BytesZip, Memo

    monkeypatch.setattr(screening, "_SEEN", Memo(entries=1024, size=2 * 1024 * 1024))

    base = minimal_workbook(tmp_path / "base.xlsx")
    rng = random.Random(5)
    most = 0
    for i in range(40):
        styles = b'<?xml version="1.0"?><styleSheet>' + bytes(rng.choice(b"ab") for _ in range(60_000)) + b"</styleSheet>"
        data = rewrite_zip(base, tmp_path / f"f{i}.xlsx", replace={"xl/styles.xml": styles}).read_bytes()
        assert screen(tmp_path / f"f{i}.xlsx", data, BytesZip(data)).readable
        most = max(most, screening._SEEN.held)
    assert 1024 * 1024 < most <= 2 * 1024 * 1024
