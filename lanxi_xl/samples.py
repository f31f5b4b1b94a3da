"""Sample declarations and sample bad files, for the demo and the tests.

* Declarations (JSON instances of the forms' schemas) stating given engine facts: a
  declaration states some facts as detail-table rows (art. 3 leases, art. 9
  trademarks, …), so the facts become the rows that add up to exactly them, by the
  form spec's own aggregation rules (``derived``), plus placeholders for the columns
  that do not enter the computation.
* Broken and hostile files of every kind the checker must survive (made on demand,
  never shipped as binaries).
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from .facts import coerce, disqualification_specs
from .forms import ArticleForm, Field, credit_code_check_char, load_model
from .policy import Clause

MODEL = load_model()
POLICY = MODEL.policy
DQ_NAMES = {d.name for d in POLICY.disqualifications}


def credit_code(n: int = 1) -> str:
    base = f"91330781MA{n:07d}"
    return base + (credit_code_check_char(base) or "")


def common(year: int = 2023, answers: Mapping[str, Any] | None = None, n: int = 1) -> dict[str, Any]:
    """A complete common part; art. 15 answers default to “none” and a 90% pension rate."""
    attestations: dict[str, Any] = {d.name: False for d in POLICY.disqualifications if d.type == "bool"}
    attestations.update({d.name: 0.9 for d in POLICY.disqualifications if d.type != "bool"})
    attestations.update(answers or {})
    return {
        "enterprise_name": f"兰溪测试电子商务有限公司{n}号",
        "credit_code": credit_code(n),
        "contact": "张三",
        "mobile": "13800000000",
        "year": year,
        "bank_account_name": f"兰溪测试电子商务有限公司{n}号",
        "bank_name": "浙江兰溪农村商业银行城区支行",
        "bank_account": "201000123456789",
        "attestations": attestations,
    }


def json_value(spec: Any, raw: Any) -> Any:
    """A case's raw fact as the JSON instance holds it (choice keys, booleans, plain numbers)."""
    value = coerce(spec, raw)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def placeholder(f: Field, n: int) -> Any:
    if f.type == "date":
        return dt.date(2023, 5, 1 + n % 28).isoformat()
    if f.type == "text":
        return f"{f.label}{n + 1}"
    if f.type == "choice":
        return f.options[0].key
    raise AssertionError(f"no placeholder for {f.key} ({f.type})")


def article_data(art: ArticleForm, clause: Clause, facts: Mapping[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for f in art.fields:
        if f.clause == clause.id and f.fact in facts:
            data[f.key] = json_value(clause.facts[f.fact], facts[f.fact])
    for t in art.tables:
        if t.items:
            if t.items not in clause.facts:
                continue
            spec = clause.facts[t.items]
            rows = []
            for n, entry in enumerate(facts.get(t.items, ())):
                entry = entry if isinstance(entry, Mapping) else {next(iter(spec.items)): entry}
                row = {k: json_value(spec.items[k], v) for k, v in entry.items()}
                for c in t.columns:
                    if c.required and c.key not in row:
                        row[c.key] = placeholder(c, n)
                rows.append(row)
            data[t.key] = rows
            continue
        derived = [d for d in art.derived if d.table == t.key and d.clause == clause.id]
        if not derived:
            continue
        # One row per distinct `where` (e.g. office / storage); `max` facts go on every row.
        groups: dict[tuple[Any, ...], dict[str, Any]] = {}
        for d in derived:
            if d.kind != "sum":
                continue
            key = tuple((k, v[0]) for k, v in sorted(d.where.items()))
            row = groups.setdefault(key, dict(key))
            row[d.column] = json_value(clause.facts[d.fact], facts[d.fact])
        rows = list(groups.values())
        for d in derived:
            if d.kind == "max":
                for row in rows:
                    row[d.column] = json_value(clause.facts[d.fact], facts[d.fact])
        for n, row in enumerate(rows):
            for c in t.columns:
                if c.required and c.key not in row:
                    row[c.key] = placeholder(c, n)
        data[t.key] = data.get(t.key, []) + rows
    return data


def instance_for(clause_id: str, facts: Mapping[str, Any], year: int = 2023, n: int = 1) -> dict[str, Any]:
    """A single-article declaration whose facts (after the form's aggregation) are ``facts``."""
    clause = POLICY.clause(clause_id)
    art = MODEL.article(clause.article)
    own = {k: v for k, v in facts.items() if k not in DQ_NAMES}
    answers = {k: json_value(_dq_spec(k), v) for k, v in facts.items() if k in DQ_NAMES}
    return {
        "policy": POLICY.key,
        "template_version": MODEL.template_version,
        "common": common(year, answers, n),
        "articles": {art.key: article_data(art, clause, own)},
    }


def _dq_spec(name: str) -> Any:
    return disqualification_specs(POLICY)[name]



# --- broken and hostile files ---------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10 if i > 1 else b"&lol;" * 10) for i in range(1, 10))
    + b']>\n<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">&lol9;</workbook>'
)


def minimal_workbook(path: Path) -> Path:
    import openpyxl  # only the file makers need it

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


_MAIN_NS = b'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
_SST_REL = (b'<Relationship Id="rIdSst" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            b'sharedStrings" Target="sharedStrings.xml"/>')


def make_slow_parsing(base: Path, folder: Path, size: int = 1 << 20) -> dict[str, Path]:
    """Workbooks whose parts (about ``size`` bytes each, within every cap) are shaped to
    make a backtracking or rescanning reader take time quadratic in their length: tags
    never closed, attribute lists that never end, runs of one word. ``base`` is a filled
    declaration; each file replaces one of its parts. Keyed by a short description."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(base) as zf:
        rels = zf.read("xl/_rels/workbook.xml.rels")
        types = zf.read("[Content_Types].xml")
        sheet = next(n for n in zf.namelist() if n.startswith("xl/worksheets/"))

    def times(unit: bytes) -> bytes:
        return unit * (size // len(unit))

    def sheet_xml(body: bytes) -> bytes:
        return b'<?xml version="1.0"?><worksheet ' + _MAIN_NS + b'><sheetData><row r="1">' + body + b"</row></sheetData></worksheet>"

    with_sst = {
        "xl/_rels/workbook.xml.rels": rels.replace(b"</Relationships>", _SST_REL + b"</Relationships>"),
        "[Content_Types].xml": types.replace(b"</Types>", b'<Override PartName="/xl/sharedStrings.xml" ContentType='
                                             b'"application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>'),
    }
    kinds: dict[str, dict[str, bytes]] = {
        "sheet-cells-never-closed": {sheet: sheet_xml(times(b'<c r="A1"><v>1</v>'))},
        "sheet-cell-attributes-never-end": {sheet: sheet_xml(times(b'<c r="A1" s="1" ') + b't="e">')},
        "sheet-cell-in-cell": {sheet: sheet_xml(times(b'<c r="A1"><f>1</f>'))},
        "sheet-formulas-outside-cells": {sheet: sheet_xml(b'<c r="A1" x="1"/>' + times(b"<f>1</f>"))},
        "shared-strings-never-closed": {
            **with_sst, "xl/sharedStrings.xml": b'<?xml version="1.0"?><sst ' + _MAIN_NS + b">" + times(b"<si><t>a</t>") + b"</sst>"},
        "styles-cellxfs-never-closed": {
            "xl/styles.xml": b'<?xml version="1.0"?><styleSheet ' + _MAIN_NS + b">" + times(b'<cellXfs count="1"><xf numFmtId="0"')},
        "styles-format-code-brackets-never-closed": {
            "xl/styles.xml": b'<?xml version="1.0"?><styleSheet ' + _MAIN_NS + b'><numFmts count="1"><numFmt numFmtId="164" '
                             b'formatCode="' + times(b"[") + b'"/></numFmts><cellXfs count="1"><xf numFmtId="164"/></cellXfs>'
                             b"</styleSheet>"},
        "custom-properties-never-closed": {
            "docProps/custom.xml": b'<?xml version="1.0"?><Properties>' + times(b'<property name="lanxi.policy" pid="2"><vt:lpwstr>x')},
        "workbook-sheet-tags-never-end": {
            "xl/workbook.xml": b'<?xml version="1.0"?><workbook ' + _MAIN_NS + b"><sheets>" + times(b'<sheet name="a" ')},
        "workbook-attribute-one-long-word": {
            "xl/workbook.xml": b'<?xml version="1.0"?><workbook ' + _MAIN_NS + b'><sheets><sheet name="a" '
                               + times(b"a") + b' r:id="rId1"/></sheets></workbook>'},
        "rels-never-end": {"xl/_rels/workbook.xml.rels": b'<?xml version="1.0"?><Relationships>' + times(b'<Relationship Id="rId1" ')},
    }
    files = {}
    for kind, parts in kinds.items():
        files[kind] = rewrite_zip(base, folder / f"slow-{kind}.xlsx", replace=parts)
    return files
