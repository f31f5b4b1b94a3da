"""Broken and hostile files, made on demand (a corpus the tests build, not binaries in git)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import openpyxl

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10 if i > 1 else b"&lol;" * 10) for i in range(1, 10))
    + b']>\n<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">&lol9;</workbook>'
)


def minimal_workbook(path: Path) -> Path:
    wb = openpyxl.Workbook()
    wb.active["A1"] = "申报表"
    wb.save(path)
    return path


def rewrite_zip(src: Path, dst: Path, replace: dict[str, bytes] | None = None, add: dict[str, bytes] | None = None) -> Path:
    replace, add = replace or {}, add or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            zout.writestr(item.filename, replace.get(item.filename, zin.read(item.filename)))
        for name, data in add.items():
            zout.writestr(name, data)
    return dst


def make_all(folder: Path) -> dict[str, Path]:
    """Every hostile kind of issue #5, by the code the checker must report."""
    folder.mkdir(parents=True, exist_ok=True)
    base = minimal_workbook(folder / "_base.xlsx")
    files: dict[str, Path] = {}

    p = folder / "not-a-zip.xlsx"
    p.write_bytes(b"\x00\x01garbage\xff" * 100)
    files["NOT_A_WORKBOOK:binary"] = p

    p = folder / "csv-renamed.xlsx"
    p.write_text("企业名称,统一社会信用代码,销售额\n兰溪某公司,91330781MA2XXXXXXX,600000\n", encoding="utf-8")
    files["NOT_A_WORKBOOK:csv"] = p

    p = folder / "truncated.xlsx"
    data = base.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    files["CORRUPT_WORKBOOK"] = p

    p = folder / "empty.xlsx"
    p.write_bytes(b"")
    files["EMPTY_FILE"] = p

    p = folder / "legacy.xls"
    p.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504 + "Workbook".encode("utf-16-le") + b"\x00" * 2000)
    files["LEGACY_XLS"] = p

    p = folder / "encrypted.xlsx"
    p.write_bytes(
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
        + "EncryptionInfo".encode("utf-16-le") + b"\x00" * 64 + "EncryptedPackage".encode("utf-16-le") + b"\x00" * 2000
    )
    files["ENCRYPTED_WORKBOOK"] = p

    # A zip bomb: one part of 200 MB of zeros compresses to ~200 KB.
    p = folder / "zip-bomb.xlsx"
    with zipfile.ZipFile(base) as zin, zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            zout.writestr(item.filename, zin.read(item.filename))
        with zout.open("xl/media/bomb.bin", "w", force_zip64=True) as fh:
            chunk = b"\x00" * (1024 * 1024)
            for _ in range(200):
                fh.write(chunk)
    files["ZIP_BOMB"] = p

    p = folder / "many-entries.xlsx"
    rewrite_zip(base, p, add={f"xl/media/x{i}.bin": b"" for i in range(1500)})
    files["ZIP_TOO_MANY_ENTRIES"] = p

    p = folder / "entity-bomb.xlsx"
    rewrite_zip(base, p, replace={"xl/workbook.xml": BILLION_LAUGHS})
    files["XML_ENTITIES"] = p

    p = folder / "macro.xlsm"
    rewrite_zip(base, p, add={"xl/vbaProject.bin": b"\xd0\xcf\x11\xe0fake-vba"})
    files["MACRO_PRESENT"] = p

    p = folder / "external-links.xlsx"
    rewrite_zip(base, p, add={"xl/externalLinks/externalLink1.xml": b'<?xml version="1.0"?><externalLink/>'})
    files["EXTERNAL_LINKS"] = p

    p = folder / "plain.zip.xlsx"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("readme.txt", "not a workbook")
    files["NOT_A_WORKBOOK:zip"] = p

    p = folder / "huge-sheet.xlsx"
    big = io.BytesIO()
    big.write(b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>')
    row = b'<row r="%d"><c r="A%d" t="n"><v>1</v></c></row>'
    n = 1
    while big.tell() < 40 * 1024 * 1024:
        big.write(row % (n, n))
        n += 1
    big.write(b"</sheetData></worksheet>")
    rewrite_zip(base, p, replace={"xl/worksheets/sheet1.xml": big.getvalue()})
    files["SHEET_TOO_LARGE"] = p
    base.unlink()
    return files
