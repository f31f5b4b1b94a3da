"""Mutated declarations: the checker never fails inside, and its own value reader either
reads what python-calamine reads or leaves the sheet to calamine.

The reader takes values straight from the sheet XML (``intake.scan_and_read``) and is
lenient the way regular expressions are; each mutation here is a well-zipped file whose
XML is cut, spliced or sprinkled with markup. Where a mutation once made the two readers
disagree (two <v> in a cell, a ">" inside a quoted attribute, a stray element in
<sheetData>, a second <sheetData>, a broken tag in a rich-text entry), the reader now
steps aside; these seeds keep it so.
"""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

import pytest
from python_calamine import CalamineWorkbook

from lanxi_xl import intake
from lanxi_xl.intake import check_file
from lanxi_xl.screen import BytesZip
from test_intake import corpus, excel_dialect  # noqa: F401 - the module's corpus fixture is reused

TOKENS = [b"<", b">", b"/", b'"', b"&", b"&amp;", b'<c r="A1">', b"</c>", b"<si>", b"</si>", b"<v>", b"</v>", b"<f>",
          b't="e"', b't="s"', b't="str"', b't="b"', b's="999"', b'r="XFD9"', b'r="A0"', b"\x00", b"\r", b"_x0041_",
          b"<!--", b"-->", b"<![CDATA[", b"]]>", b"9" * 40, b"-1e999", b"NaN", b"\xff\xfe", "中".encode(), b"<is><t>",
          b"</t></is>", b"<r>", b"<rPh>", b'numFmtId="14"', b'formatCode="yyyy-mm-dd"', b'date1904="1"',
          b'uniqueCount="99999999"', b'state="visible"', b"<sheetData>", b"<row>", b"</row>"]
HOT = ("xl/worksheets/sheet1.xml", "xl/worksheets/sheet2.xml", "xl/sharedStrings.xml", "xl/styles.xml",
       "xl/workbook.xml", "xl/_rels/workbook.xml.rels", "docProps/custom.xml")


def mutate(data: bytes, rng: random.Random) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        parts = {n: zf.read(n) for n in zf.namelist()}
    xml = [n for n in parts if n.endswith((".xml", ".rels"))]
    xml += [n for n in xml if n in HOT] * 4  # mostly the parts the checker reads
    for _ in range(rng.randint(1, 4)):
        name = rng.choice(xml)
        x = bytearray(parts[name])
        i, op = rng.randrange(len(x)), rng.random()
        if op < 0.3:
            del x[i:i + rng.randint(1, 20)]
        elif op < 0.6:
            x[i:i] = rng.choice(TOKENS)
        elif op < 0.8:
            x[i] = rng.randrange(256)
        else:
            j = rng.randrange(len(x))
            x[i:i] = x[j:j + rng.randint(1, 200)]
        parts[name] = bytes(x)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, part in parts.items():
            zf.writestr(name, part)
    return out.getvalue()


def calamine_grid(data: bytes, sheet: str) -> list[list[object]] | None:
    try:
        return CalamineWorkbook.from_filelike(io.BytesIO(data)).get_sheet_by_name(sheet).to_python(skip_empty_area=False)
    except BaseException as exc:  # noqa: BLE001 - pyo3 panics derive from BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return None  # calamine refuses the file (often for a part the checker does not need)


@pytest.mark.parametrize("seed", [8, 18, 24, 26, 28, 33, 34])  # each found a disagreement before the fixes above
def test_mutated_files_are_read_as_calamine_reads_them_or_left_to_it(seed: int, corpus: dict[str, Path],  # noqa: F811
                                                                     tmp_path: Path) -> None:
    bases = [corpus["valid-8"].read_bytes(), corpus["valid-3"].read_bytes(),
             excel_dialect(corpus["valid-all"], tmp_path / "excel.xlsx").read_bytes()]
    rng = random.Random(seed)
    compared = 0
    for i in range(150):
        data = mutate(rng.choice(bases), rng)
        path = tmp_path / f"m{i}.xlsx"
        path.write_bytes(data)
        report = check_file(path)
        assert "INTERNAL_ERROR" not in [e.code for e in report.problems], (seed, i, report.problems)
        try:
            zf = BytesZip(data)
            reader = intake._Reader(data, zf)
        except Exception:  # noqa: BLE001 - a directory or workbook the checker refuses: nothing to compare
            continue
        for sheet in list(reader.parts)[:2]:
            try:
                got = intake.scan_and_read(zf.read(reader.parts[sheet]), reader._strings_and_styles)
            except Exception:  # noqa: BLE001 - refused on the way (the checker reports it per file)
                continue
            if got is None or got[1] is None or got[2] is not None:
                continue  # left to calamine
            ref = calamine_grid(data, sheet)
            if ref is None:
                continue
            assert got[1] == ref, (seed, i, sheet)
            assert [[type(v) for v in row] for row in got[1]] == [[type(v) for v in row] for row in ref], (seed, i, sheet)
            compared += 1
    assert compared > 50  # many mutations leave the sheets readable: the comparison did happen
