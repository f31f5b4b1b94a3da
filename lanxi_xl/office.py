"""Thin, robust wrapper around LibreOffice headless (``soffice``).

Two entry points:

* :func:`recalculate` -- xlsx -> xlsx with **every** formula recalculated and the
  results stored as cached values (what tests read back with
  ``openpyxl.load_workbook(data_only=True)`` or python-calamine).
* :func:`convert` -- xlsx -> pdf / png / xlsx / csv / ods, i.e. "open the file in
  LibreOffice and save it as ...", the way an enterprise that fills the
  declaration in LibreOffice would.

Design notes (see docs/xlsx-findings.md for the experiments behind them):

* Every call runs ONE ``soffice`` process for all input files (start-up costs
  about a second; each further file costs ~0.1 s).
* Every call uses a *fresh, throw-away user profile*
  (``-env:UserInstallation=file:///tmp/...``) so it never collides with a
  running LibreOffice of the user, never depends on the user's settings and can
  run in parallel (pytest-xdist).  The profile is deleted afterwards.
* LibreOffice 7.4 ignores ``<calcPr fullCalcOnLoad="1"/>`` and by default
  ("never recalculate") keeps any cached value present in the file; it only
  computes cells whose cached value is missing.  :func:`recalculate` therefore
  writes ``OOXMLRecalcMode=0`` / ``ODFRecalcMode=0`` ("always recalculate") into
  the fresh profile's ``registrymodifications.xcu``.
* ``soffice`` exits with status 0 even when a file could not be loaded or
  exported, so success is judged by the presence of each expected output file.
* Output is written to a private staging directory first and then moved into
  ``out_dir``: converting ``x.xlsx`` to xlsx "in place" is therefore safe.

Only the standard library (and lanxi_xl.errors) is used here.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Sequence, Union

from lanxi_xl.errors import LanxiError

__all__ = [
    "OfficeError",
    "FORMATS",
    "INSTALL_HINT",
    "find_soffice",
    "recalculate",
    "convert",
    "lo_cached_number",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Environment variable that may point at the soffice executable.
SOFFICE_ENV = "LANXI_SOFFICE"

INSTALL_HINT_ZH = (
    "安装 LibreOffice：Debian/Ubuntu 执行 `apt-get install libreoffice-calc-nogui`；"
    "Windows/macOS 从 https://www.libreoffice.org 安装；"
    f"或设置环境变量 {SOFFICE_ENV} 指向 soffice 可执行文件。"
)
INSTALL_HINT_EN = (
    "Install LibreOffice: on Debian/Ubuntu run `apt-get install libreoffice-calc-nogui`; "
    "on Windows/macOS install it from https://www.libreoffice.org; "
    f"or set the {SOFFICE_ENV} environment variable to the soffice executable."
)
INSTALL_HINT = INSTALL_HINT_ZH + " / " + INSTALL_HINT_EN

PNG_HINT_ZH = "PNG 导出需要 LibreOffice 图形过滤器：`apt-get install libreoffice-draw-nogui`。"
PNG_HINT_EN = (
    "PNG export needs LibreOffice's graphic filters (calc_png_Export): "
    "`apt-get install libreoffice-draw-nogui`."
)


#: fmt -> (output extension, value for ``--convert-to``).
#: CSV: field separator ',' (44), text delimiter '"' (34), UTF-8 (76), first
#: line 1; only the FIRST sheet is exported (even if another sheet is active).
FORMATS: dict[str, tuple[str, str]] = {
    "xlsx": ("xlsx", "xlsx:Calc MS Excel 2007 XML"),
    "pdf": ("pdf", "pdf:calc_pdf_Export"),
    "png": ("png", "png:calc_png_Export"),
    "csv": ("csv", "csv:Text - txt - csv (StarCalc):44,34,76,1"),
    "ods": ("ods", "ods:calc8"),
}


class OfficeError(LanxiError, RuntimeError):
    """LibreOffice is missing or a conversion failed.

    ``code`` is a stable machine-readable identifier:

    ``OFFICE_NOT_FOUND``           no soffice executable
    ``OFFICE_INPUT_NOT_FOUND``     an input file does not exist
    ``OFFICE_DUPLICATE_OUTPUT``    two inputs would produce the same output file name
    ``OFFICE_UNSUPPORTED_FORMAT``  unknown ``fmt``
    ``OFFICE_TIMEOUT``             soffice did not finish in time (it was killed)
    ``OFFICE_FAILED``              soffice could not be started, or exited non-zero
                                   without producing anything
    ``OFFICE_CONVERSION_FAILED``   soffice ran, but some outputs were not produced

    ``str(error)`` is "Chinese / English" (plus the soffice output, if any).
    ``failed`` lists the input files without output, ``converted`` the output
    files that were produced (and moved into ``out_dir``) anyway, ``detail``
    holds the soffice command line and output.
    """

    def __init__(
        self,
        code: str,
        message_zh: str,
        message_en: str,
        *,
        detail: str = "",
        failed: Sequence[Path] = (),
        converted: Sequence[Path] = (),
    ) -> None:
        text = f"{message_zh} / {message_en}"
        if detail:
            text += "\n" + detail
        super().__init__(code, text, failed=list(failed), converted=list(converted))
        self.message_zh = message_zh
        self.message_en = message_en
        self.detail = detail
        self.failed = list(failed)
        self.converted = list(converted)


# --------------------------------------------------------------------------
# locating soffice
# --------------------------------------------------------------------------

def _candidates() -> list[str]:
    cands: list[str] = []
    if sys.platform.startswith("win"):
        for env in ("ProgramFiles", "ProgramW6432", "ProgramFiles(x86)"):
            base = os.environ.get(env)
            if base:
                # soffice.com is the console wrapper: it waits and prints messages.
                cands.append(os.path.join(base, "LibreOffice", "program", "soffice.com"))
                cands.append(os.path.join(base, "LibreOffice", "program", "soffice.exe"))
        cands += [
            r"C:\Program Files\LibreOffice\program\soffice.com",
            r"C:\Program Files\LibreOffice\program\soffice.exe",
            r"C:\Program Files (x86)\LibreOffice\program\soffice.exe",
        ]
    elif sys.platform == "darwin":
        cands += [
            "/Applications/LibreOffice.app/Contents/MacOS/soffice",
            os.path.expanduser("~/Applications/LibreOffice.app/Contents/MacOS/soffice"),
        ]
    cands += [
        "/usr/bin/soffice",
        "/usr/local/bin/soffice",
        "/usr/lib/libreoffice/program/soffice",
        "/usr/lib64/libreoffice/program/soffice",
        "/usr/local/lib/libreoffice/program/soffice",
    ]
    # Upstream .deb/.rpm builds: /opt/libreoffice7.6/program/soffice; newest first.
    cands += sorted(glob.glob("/opt/libreoffice*/program/soffice"), reverse=True)
    cands += ["/snap/bin/libreoffice"]
    return cands


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_soffice() -> str | None:
    """Return the path of the soffice executable, or ``None``.

    Order: ``$LANXI_SOFFICE``, ``soffice``/``libreoffice`` on PATH, then the
    usual install locations on Linux, macOS and Windows.
    """
    env = os.environ.get(SOFFICE_ENV)
    if env:
        found = shutil.which(env)
        if found:
            return found
        if _is_executable(env):
            return env
    names = ["soffice", "libreoffice"]
    if sys.platform.startswith("win"):
        names = ["soffice.com", "soffice.exe", "soffice"]
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    for cand in _candidates():
        if _is_executable(cand):
            return cand
    return None


def _require_soffice(soffice: str | None) -> str:
    exe = soffice or find_soffice()
    if not exe:
        raise OfficeError(
            "OFFICE_NOT_FOUND",
            "未找到 LibreOffice（soffice）。" + INSTALL_HINT_ZH,
            "LibreOffice (soffice) not found. " + INSTALL_HINT_EN,
        )
    return exe


# --------------------------------------------------------------------------
# profile
# --------------------------------------------------------------------------

def _registry_xcu(recalc: bool) -> str:
    items = [
        # No lock files next to the input documents.
        ("/org.openoffice.Office.Common/Misc", "UseDocumentOOoLockFile", "false"),
        ("/org.openoffice.Office.Common/Misc", "UseDocumentSystemFileLocking", "false"),
    ]
    if recalc:
        # 0 = always recalculate, 1 = never (default), 2 = ask.
        items += [
            ("/org.openoffice.Office.Calc/Formula/Load", "OOXMLRecalcMode", "0"),
            ("/org.openoffice.Office.Calc/Formula/Load", "ODFRecalcMode", "0"),
        ]
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<oor:items xmlns:oor="http://openoffice.org/2001/registry" '
        'xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',
    ]
    for path, name, value in items:
        lines.append(
            f'<item oor:path="{path}"><prop oor:name="{name}" oor:op="fuse">'
            f"<value>{value}</value></prop></item>"
        )
    lines.append("</oor:items>")
    return "\n".join(lines) + "\n"


def _write_profile(profile_dir: Path, recalc: bool) -> None:
    user = profile_dir / "user"
    user.mkdir(parents=True, exist_ok=True)
    (user / "registrymodifications.xcu").write_text(_registry_xcu(recalc), encoding="utf-8")


# --------------------------------------------------------------------------
# running soffice
# --------------------------------------------------------------------------

def _normalize_paths(paths: Iterable[PathLike] | PathLike) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return [Path(p).expanduser().resolve() for p in paths]


def _kill_tree(proc: subprocess.Popen) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            subprocess.run(
                ["taskkill", "/F", "/T", "/PID", str(proc.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
    except (ProcessLookupError, PermissionError, OSError):
        pass
    try:
        proc.kill()
    except OSError:
        pass


def _tail(text: str, limit: int = 4000) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _run(
    paths: Iterable[PathLike] | PathLike,
    out_dir: PathLike,
    fmt: str,
    *,
    recalc: bool,
    timeout: float | None,
    soffice: str | None,
) -> list[Path]:
    if fmt in FORMATS:
        ext, convert_to = FORMATS[fmt]
    elif ":" in fmt:  # expert use: "ext:Filter Name:options"
        ext, convert_to = fmt.split(":", 1)[0], fmt
    else:
        raise OfficeError(
            "OFFICE_UNSUPPORTED_FORMAT",
            f"不支持的格式：{fmt!r}（可用：{', '.join(FORMATS)}）",
            f"unsupported format {fmt!r} (supported: {', '.join(FORMATS)})",
        )

    inputs = _normalize_paths(paths)
    if not inputs:
        return []
    missing = [p for p in inputs if not p.is_file()]
    if missing:
        raise OfficeError(
            "OFFICE_INPUT_NOT_FOUND",
            "输入文件不存在：" + "，".join(map(str, missing)),
            "input file(s) not found: " + ", ".join(map(str, missing)),
            failed=missing,
        )
    out_names = [p.stem + "." + ext for p in inputs]
    seen: dict[str, Path] = {}
    for p, name in zip(inputs, out_names):
        key = name.casefold()
        if key in seen:
            raise OfficeError(
                "OFFICE_DUPLICATE_OUTPUT",
                f"{seen[key]} 与 {p} 会生成同名输出文件 {name}",
                f"{seen[key]} and {p} would both be written as {name}",
                failed=[p],
            )
        seen[key] = p

    exe = _require_soffice(soffice)
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    if timeout is None:
        timeout = 120.0 + 10.0 * len(inputs)

    work = Path(tempfile.mkdtemp(prefix="lanxi-soffice-"))
    try:
        profile = work / "profile"
        stage = work / "out"
        stage.mkdir()
        _write_profile(profile, recalc)
        cmd = [
            exe,
            f"-env:UserInstallation={profile.as_uri()}",
            "--headless",
            "--invisible",
            "--norestore",
            "--nologo",
            "--nodefault",
            "--nolockcheck",
            "--convert-to",
            convert_to,
            "--outdir",
            str(stage),
            *[str(p) for p in inputs],  # absolute paths: never mistaken for options
        ]
        popen_kw: dict = {}
        if os.name == "posix":
            popen_kw["start_new_session"] = True  # own process group -> killable as a tree
        else:  # pragma: no cover - Windows
            popen_kw["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=str(work),
                **popen_kw,
            )
        except OSError as exc:
            raise OfficeError(
                "OFFICE_FAILED",
                f"无法启动 LibreOffice：{exe}（{exc}）",
                f"cannot start LibreOffice: {exe} ({exc})",
            ) from exc
        try:
            raw_out, raw_err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc)
            try:
                proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:  # pragma: no cover - pipes held by a stray child
                pass
            raise OfficeError(
                "OFFICE_TIMEOUT",
                f"LibreOffice 在 {timeout:g} 秒内未完成转换，已终止（{len(inputs)} 个文件）",
                f"LibreOffice did not finish within {timeout:g} s and was killed "
                f"({len(inputs)} file(s))",
                failed=inputs,
            ) from None
        finally:
            if proc.poll() is None:  # e.g. KeyboardInterrupt while waiting
                _kill_tree(proc)
        output = (
            raw_out.decode("utf-8", "replace") + raw_err.decode("utf-8", "replace")
        )
        detail = f"command: {' '.join(cmd)}\nexit status: {proc.returncode}\n{_tail(output)}"

        produced: list[Path] = []
        failed: list[Path] = []
        for src, name in zip(inputs, out_names):
            staged = stage / name
            if staged.is_file() and staged.stat().st_size > 0:
                target = out / name
                shutil.move(str(staged), str(target))
                produced.append(target)
            else:
                failed.append(src)

        if failed:
            hint_zh, hint_en = "", ""
            if ext == "png":
                hint_zh, hint_en = PNG_HINT_ZH, PNG_HINT_EN
            code = "OFFICE_FAILED" if proc.returncode and not produced else "OFFICE_CONVERSION_FAILED"
            raise OfficeError(
                code,
                f"LibreOffice 转换失败（{len(failed)}/{len(inputs)} 个文件）："
                + "，".join(str(p) for p in failed) + (" " + hint_zh if hint_zh else ""),
                f"LibreOffice conversion failed for {len(failed)}/{len(inputs)} file(s): "
                + ", ".join(str(p) for p in failed) + (" " + hint_en if hint_en else ""),
                detail=detail,
                failed=failed,
                converted=produced,
            )
        return produced
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------

def recalculate(
    paths: Iterable[PathLike] | PathLike,
    out_dir: PathLike,
    *,
    timeout: float | None = None,
    soffice: str | None = None,
) -> list[Path]:
    """Recalculate every formula of ``paths`` (xlsx) in LibreOffice.

    Writes ``out_dir/<stem>.xlsx`` for each input (same order as ``paths``) and
    returns those paths.  All files are handled by a single soffice process.
    Cached values that are already in the files are ignored (always-recalc
    mode), so stale values can never leak into the result.

    Raises :class:`OfficeError` (see its ``code``).
    """
    return _run(paths, out_dir, "xlsx", recalc=True, timeout=timeout, soffice=soffice)


def convert(
    paths: Iterable[PathLike] | PathLike,
    out_dir: PathLike,
    fmt: str,
    *,
    recalc: bool = False,
    timeout: float | None = None,
    soffice: str | None = None,
) -> list[Path]:
    """Open each file in LibreOffice and save it as ``fmt``.

    ``fmt`` is one of :data:`FORMATS` (``xlsx``, ``pdf``, ``png``, ``csv``,
    ``ods``) or a raw ``--convert-to`` value such as
    ``"csv:Text - txt - csv (StarCalc):59,34,76,1"`` (extension before the first
    colon).  With the default ``recalc=False`` LibreOffice behaves like a fresh
    default installation (the "enterprise saved it in LibreOffice" case): cached
    values already in the file are kept, missing ones are computed.

    Notes: ``csv`` exports only the first sheet; ``png`` renders only the first
    page and needs ``libreoffice-draw-nogui`` on Debian/Ubuntu.

    Returns the output paths in input order.  Raises :class:`OfficeError`.
    """
    return _run(paths, out_dir, fmt, recalc=recalc, timeout=timeout, soffice=soffice)


def lo_cached_number(value: float) -> float:
    """Round ``value`` the way LibreOffice stores cached numbers in xlsx.

    LibreOffice 7.4 writes cached formula results with 15 significant digits
    (``=1/3`` -> ``0.333333333333333``, ``=0.1+0.2`` -> ``0.3``), so a Python
    engine result must be passed through this before an exact comparison.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    result = float(f"{value:.15g}")
    if isinstance(value, int) and result.is_integer():
        return int(result)
    return result
