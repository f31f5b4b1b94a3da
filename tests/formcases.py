"""Declarations (JSON instances of the forms' schemas) built from the hand-worked award cases.

tests/cases/lanxi-2022.yaml states each case as the engine's facts. A declaration
states some of them as detail-table rows (art. 3 leases, art. 9 trademarks, …), so
here each case becomes the rows that add up to exactly its facts, using the
form spec's own aggregation rules (`derived`), plus placeholders for the columns
that do not enter the computation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lanxi_xl.forms import FormModel
from lanxi_xl.samples import (  # noqa: F401 - re-exported for the tests
    DQ_NAMES,
    MODEL,
    POLICY,
    article_data,
    common,
    credit_code,
    instance_for,
    json_value,
    placeholder,
)

CASES: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "cases" / "lanxi-2022.yaml").read_text(encoding="utf-8")
)


def award_cases() -> list[dict[str, Any]]:
    """The hand-worked cases a declaration can state (no input errors, covered years)."""
    return [c for c in CASES if "error" not in c]


def model() -> FormModel:
    return MODEL
