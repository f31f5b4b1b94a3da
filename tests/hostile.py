"""Broken and hostile files, made on demand (the makers live in lanxi_xl.samples)."""

from lanxi_xl.samples import BILLION_LAUGHS, make_all, minimal_workbook, rewrite_zip  # noqa: F401
