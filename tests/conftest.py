"""Shared pytest fixtures.

LibreOffice fixtures (used by tests that must recalculate the *native* Excel
formulas in a real spreadsheet application):

* ``soffice``      -- path of the soffice executable; skips the test with an
                      install hint when LibreOffice is absent.
* ``lo_recalc``    -- ``lo_recalc({"name": workbook_or_path, ...})`` saves the
                      openpyxl workbooks, recalculates ALL of them in one
                      soffice run and returns ``{"name": Path_to_recalculated_xlsx}``.
* ``lo_roundtrip`` -- same, but opens and re-saves as xlsx with a default
                      LibreOffice profile (what an enterprise saving in
                      LibreOffice produces); cached values already present are kept.

Call them from a *module-scoped* fixture so that a test module pays the
soffice start-up (~1 s) once::

    @pytest.fixture(scope="module")
    def results(lo_recalc):
        return lo_recalc({"a": build_a(), "b": build_b()})
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Mapping

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # make `import lanxi_xl` work with plain `pytest`
    sys.path.insert(0, str(ROOT))

from lanxi_xl import office  # noqa: E402

SOFFICE_MISSING = (
    "LibreOffice (soffice) not found -- install it with "
    "`apt-get install libreoffice-calc-nogui` (Debian/Ubuntu), from "
    "https://www.libreoffice.org (Windows/macOS), or set LANXI_SOFFICE to the "
    "soffice executable. / 未找到 LibreOffice，请执行 "
    "`apt-get install libreoffice-calc-nogui` 安装。"
)


@pytest.fixture(scope="session")
def soffice() -> str:
    exe = office.find_soffice()
    if exe is None:
        pytest.skip(SOFFICE_MISSING)
    return exe


def _make_runner(
    tmp_path_factory: pytest.TempPathFactory, soffice: str, action: str
) -> Callable[[Mapping[str, object]], dict[str, Path]]:
    def run(files: Mapping[str, object]) -> dict[str, Path]:
        src = tmp_path_factory.mktemp(f"lo-{action}-in")
        out = tmp_path_factory.mktemp(f"lo-{action}-out")
        inputs: list[Path] = []
        for name, item in files.items():
            target = src / f"{name}.xlsx"
            if isinstance(item, (str, Path)):
                target.write_bytes(Path(item).read_bytes())
            else:  # an openpyxl Workbook (or anything with .save(path))
                item.save(target)
            inputs.append(target)
        if action == "recalc":
            outputs = office.recalculate(inputs, out, soffice=soffice)
        else:
            outputs = office.convert(inputs, out, "xlsx", soffice=soffice)
        return dict(zip(files.keys(), outputs))

    return run


@pytest.fixture(scope="session")
def lo_recalc(tmp_path_factory, soffice):
    """Recalculate workbooks in LibreOffice (always-recalc mode, one soffice run)."""
    return _make_runner(tmp_path_factory, soffice, "recalc")


@pytest.fixture(scope="session")
def lo_roundtrip(tmp_path_factory, soffice):
    """Open + save workbooks as xlsx in LibreOffice with default settings."""
    return _make_runner(tmp_path_factory, soffice, "roundtrip")
