"""Screening a returned file before any spreadsheet library opens it.

Returned declarations come from anyone: some are broken, a few are hostile. This
module looks at the bytes and the zip directory only — it never decompresses more
than a bounded amount and never parses XML with entities — and says whether the file
is a workbook we may open, or what it is instead (CSV renamed .xlsx, legacy .xls,
an encrypted workbook, a zip bomb…). Flags (macros, external links) are reported
without refusing the file: nothing in it is ever run or followed.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LanxiError

# Generous for a declaration form (a few hundred KB), small enough for a batch.
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_ENTRIES = 1000
MAX_TOTAL_UNCOMPRESSED = 100 * 1024 * 1024
MAX_PART_UNCOMPRESSED = 30 * 1024 * 1024
MAX_RATIO = 200  # deflate reaches ~1000 only on pathological input
RATIO_MIN_SIZE = 1024 * 1024  # tiny parts may compress well legitimately

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"
ENCRYPTION_MARKER = "EncryptionInfo".encode("utf-16-le")


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    severity: str = "error"  # error: the file is not read; warning: read, but flagged


@dataclass(frozen=True)
class Screening:
    path: Path
    kind: str  # xlsx | xlsm | xls | encrypted | csv | zip | empty | unknown
    problems: tuple[Problem, ...] = field(default=())

    @property
    def readable(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    @property
    def flags(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")


class ScreeningError(LanxiError):
    """Raised by :func:`read_part` when a part turns out larger than it declared."""


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = head.decode("gb18030")
        except UnicodeDecodeError:
            return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * max(len(text), 1)


def screen(path: str | Path, data: bytes | None = None, zf: zipfile.ZipFile | None = None) -> Screening:
    """What ``path`` is and whether it is safe to open as a declaration workbook.

    ``data``: the file's bytes when the caller has read them already (a batch reads
    each file once: hashing, screening and reading share them); ``zf``: a zip the caller
    opened over those bytes (its directory is then parsed once; it is not closed here).
    """
    path = Path(path)
    try:
        size = path.stat().st_size if data is None else len(data)
        if data is None:
            with path.open("rb") as fh:
                head = fh.read(4096)
        else:
            head = data[:4096]
    except OSError as exc:
        return Screening(path, "unknown", (Problem("FILE_UNREADABLE", f"无法读取文件：{exc.strerror or exc}"),))
    if size == 0:
        return Screening(path, "empty", (Problem("EMPTY_FILE", "文件为空（0字节），请重新保存申报表后再提交"),))
    if size > MAX_FILE_BYTES:
        return Screening(
            path, "unknown",
            (Problem("FILE_TOO_LARGE", f"文件过大（{size // 1024 // 1024}MB），申报表不应超过{MAX_FILE_BYTES // 1024 // 1024}MB"),),
        )
    if head.startswith(OLE_MAGIC):
        return _screen_ole(path, data)
    if not head.startswith(ZIP_MAGIC):
        if _looks_like_text(head):
            return Screening(
                path, "csv",
                (Problem("NOT_A_WORKBOOK", "文件是文本（如CSV）而不是Excel工作簿，只是扩展名为.xlsx；请用下发的申报表填写后另存为.xlsx"),),
            )
        return Screening(path, "unknown", (Problem("NOT_A_WORKBOOK", "文件不是Excel工作簿（.xlsx），请用下发的申报表填写"),))
    if zf is not None and data is not None:
        try:
            return _screen_archive(path, zf, data)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
            return _corrupt(path)
    return _screen_zip(path, data if data is not None else path)


def _corrupt(path: Path) -> Screening:
    return Screening(
        path, "unknown",
        (Problem("CORRUPT_WORKBOOK", "文件已损坏或不完整（可能下载或传输中断），请重新保存后提交"),),
    )


def _screen_ole(path: Path, data: bytes | None) -> Screening:
    if data is None:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES)
    if ENCRYPTION_MARKER in data:
        return Screening(
            path, "encrypted",
            (Problem("ENCRYPTED_WORKBOOK", "工作簿设置了打开密码，无法审核；请取消密码（文件→信息→保护工作簿）后重新提交"),),
        )
    return Screening(
        path, "xls",
        (Problem("LEGACY_XLS", "文件是旧版Excel 97-2003格式（.xls），请使用下发的.xlsx申报表填写"),),
    )


def _screen_zip(path: Path, source: Path | bytes) -> Screening:
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as zf:
            return _screen_archive(path, zf, source if isinstance(source, bytes) else None)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
        return _corrupt(path)


class BytesZip(zipfile.ZipFile):
    """A zip over bytes already in memory: hashing, screening and reading share the
    bytes, the directory (parsed once) and the small parts inflated while screening."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.data = data
        self.inflated: dict[int, bytes] = {}  # header offset -> the whole part, CRC checked


def _start(info: zipfile.ZipInfo, data: bytes) -> int | None:
    """Where the part's compressed bytes begin, when its local header agrees with the
    directory (magic, name); None otherwise (``zipfile`` then says what is wrong)."""
    head = data[info.header_offset: info.header_offset + 30]
    if len(head) != 30 or head[:4] != ZIP_MAGIC:
        return None
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    try:
        if data[info.header_offset + 30: info.header_offset + 30 + name_len] != info.orig_filename.encode(encoding):
            return None
    except UnicodeError:
        return None
    return info.header_offset + 30 + name_len + extra_len


class Memo:
    """What was worked out from some bytes, kept for the rest of a batch: forgotten all at
    once when it would hold more than ``entries`` items or ``size`` bytes (each item's
    ``weight``, its keys and values in bytes), so no run of odd files makes it grow
    without bound. Callers read ``data`` directly (the lookup is on the hot path)."""

    def __init__(self, entries: int, size: int) -> None:
        self.data: dict[Any, Any] = {}
        self.entries, self.size, self.held = entries, size, 0

    def put(self, key: Any, value: Any, weight: int) -> None:
        if weight > self.size // 8:
            return  # one big item would push out everything else
        if len(self.data) >= self.entries or self.held + weight > self.size:
            self.clear()
        self.data[key] = value
        self.held += weight

    def clear(self) -> None:
        self.data.clear()
        self.held = 0

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __len__(self) -> int:
        return len(self.data)


# Parts that are byte for byte the same in many files of a batch (the theme, styles,
# rels and properties of one template): what inflating them gave is kept, keyed by the
# directory entry and found again only when the compressed bytes are equal, so a part
# is never trusted for its name or CRC. Sheets differ per file and are not kept.
_SEEN = Memo(entries=1024, size=16 * 1024 * 1024)


def _seen_key(info: zipfile.ZipInfo, whole: bool) -> tuple[bool, str, int, int, int, int] | None:
    if info.filename.startswith("xl/worksheets/") or info.compress_size > WHOLE_PART_BYTES:
        return None
    return whole, info.filename, info.compress_type, info.compress_size, info.CRC, info.file_size


def _remember(key: tuple[bool, str, int, int, int, int] | None, chunk: bytes, out: bytes) -> None:
    if key is not None:
        _SEEN.put(key, (bytes(chunk), out), len(chunk) + len(out))


def _inflate(info: zipfile.ZipInfo, data: bytes) -> bytes | None:
    """The whole part, inflated with raw ``zlib`` from the bytes in memory, when its local
    header, size and CRC-32 agree with the directory; None otherwise (``zipfile`` then
    reads it, and says what is wrong)."""
    if info.compress_type not in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED) or info.flag_bits & 0x1:
        return None
    start = _start(info, data)
    if start is None:
        return None
    chunk = data[start: start + info.compress_size]
    key = _seen_key(info, True)
    seen = _SEEN.data.get(key) if key is not None else None
    if seen is not None and seen[0] == chunk:
        return seen[1]
    try:
        out = chunk if info.compress_type == zipfile.ZIP_STORED else \
            zlib.decompressobj(-15).decompress(chunk, info.file_size + 1)
    except zlib.error:
        return None
    if len(out) != info.file_size or zlib.crc32(out) != info.CRC:
        return None
    _remember(key, chunk, out)
    return out


WHOLE_PART_BYTES = 64 * 1024  # parts up to this size are inflated whole while screening…
READ_NEXT = ("xl/workbook.xml", "xl/_rels/", "xl/styles.xml", "xl/sharedStrings.xml", "xl/worksheets/sheet",
             "docProps/custom.xml", "[Content_Types].xml")  # …if the checker reads them next


def _prolog(zf: zipfile.ZipFile, info: zipfile.ZipInfo, data: bytes | None) -> bytes:
    """The first KB of a part, inflated. From the bytes in memory this is a raw zlib
    inflate of the part's first compressed bytes (~3 µs); ``zipfile.open`` costs ~15 µs
    a part, which is most of screening a batch. A small part of a :class:`BytesZip` is
    inflated whole and kept: the checker reads most of them next."""
    if isinstance(zf, BytesZip) and info.file_size <= WHOLE_PART_BYTES and info.filename.startswith(READ_NEXT):
        whole = zf.inflated.get(info.header_offset)
        if whole is None:
            whole = _inflate(info, zf.data)
        if whole is not None:
            zf.inflated[info.header_offset] = whole
            return whole[:1024]
    if data is not None and info.compress_type in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED):
        start = _start(info, data)
        if start is not None:
            chunk = data[start: start + min(info.compress_size, 4096)]
            if info.compress_type == zipfile.ZIP_STORED:
                return chunk[:1024]
            key = _seen_key(info, False)
            seen = _SEEN.data.get(key) if key is not None else None
            if seen is not None and seen[0] == chunk:
                return seen[1]
            try:
                prolog = zlib.decompressobj(-15).decompress(chunk, 1024)
            except zlib.error:
                pass  # let zipfile say what is wrong
            else:
                _remember(key, chunk, prolog)
                return prolog
    with zf.open(info) as part:
        return part.read(1024)


def _screen_archive(path: Path, zf: zipfile.ZipFile, data: bytes | None) -> Screening:
    infos = zf.infolist()
    problems: list[Problem] = []
    if len(infos) > MAX_ENTRIES:
        return Screening(path, "zip", (Problem("ZIP_TOO_MANY_ENTRIES", f"文件包含{len(infos)}个部件，超出申报表的合理范围"),))
    total = sum(i.file_size for i in infos)
    if total > MAX_TOTAL_UNCOMPRESSED:
        return Screening(path, "zip", (Problem("ZIP_BOMB", "文件解压后体积异常巨大（疑似压缩炸弹），已拒绝打开"),))
    for info in infos:
        if info.file_size > MAX_PART_UNCOMPRESSED:
            return Screening(path, "zip", (Problem("SHEET_TOO_LARGE", f"部件 {info.filename} 过大，申报表不应包含如此多的数据"),))
        if info.file_size >= RATIO_MIN_SIZE and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            return Screening(path, "zip", (Problem("ZIP_BOMB", "文件压缩比异常（疑似压缩炸弹），已拒绝打开"),))
        if info.flag_bits & 0x1:
            return Screening(path, "encrypted", (Problem("ENCRYPTED_WORKBOOK", "文件内容已加密，无法审核"),))
    names = {i.filename for i in infos}
    if "[Content_Types].xml" not in names or not any(n.startswith("xl/workbook.") for n in names):
        return Screening(path, "zip", (Problem("NOT_A_WORKBOOK", "文件是压缩包而不是Excel工作簿，请使用下发的.xlsx申报表"),))
    kind = "xlsx"
    for info in infos:
        if info.filename.endswith((".xml", ".rels", ".vml")) and info.file_size:
            # DOCTYPE can only appear in the prolog: a short read decides it.
            prolog = _prolog(zf, info, data)
            if b"<!DOCTYPE" in prolog or b"<!ENTITY" in prolog:
                return Screening(
                    path, kind, (Problem("XML_ENTITIES", f"部件 {info.filename} 含有XML实体声明（可能是恶意文件），已拒绝打开"),)
                )
    content_types = read_bounded(zf, "[Content_Types].xml", 1024 * 1024)
    if "xl/vbaProject.bin" in names or b"macroEnabled" in content_types:
        kind = "xlsm"
        problems.append(Problem("MACRO_PRESENT", "文件包含宏（VBA），系统不会运行宏；请使用不含宏的.xlsx申报表", "warning"))
    if any(n.startswith("xl/externalLinks/") for n in names):
        problems.append(Problem("EXTERNAL_LINKS", "文件含有指向其他工作簿的外部链接，链接不会被读取或更新", "warning"))
    return Screening(path, kind, tuple(problems))


def read_bounded(zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """A part's bytes, refusing to decompress more than ``limit`` whatever its header says."""
    if isinstance(zf, BytesZip):
        info = zf.getinfo(name)  # KeyError as zf.open
        if info.file_size <= limit:
            whole = zf.inflated.get(info.header_offset)
            if whole is None:
                whole = _inflate(info, zf.data)
            if whole is not None:
                return whole
    with zf.open(name) as part:
        data = part.read(limit + 1)
    if len(data) > limit:
        raise ScreeningError("PART_TOO_LARGE", f"部件 {name} 解压后超过{limit}字节，已停止读取")
    return data


def read_part(path: str | Path, name: str, limit: int = MAX_PART_UNCOMPRESSED) -> bytes:
    """One zip part of a screened file, with decompression capped at ``limit`` bytes."""
    with zipfile.ZipFile(path) as zf:
        return read_bounded(zf, name, limit)
