"""Declarations for the registry and ledger tests: valid credit codes and JSON files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from lanxi_xl.registry import credit_code_check_char
from lanxi_xl.review import declaration_document, write_declaration


def credit_code(n: int) -> str:
    """A well-formed 统一社会信用代码 (correct check character) for test enterprise ``n``."""
    base = f"91330781MA{n:07d}"
    return base + credit_code_check_char(base)


def declare(
    folder: Path,
    name: str,
    n: int,
    year: int,
    claims: Sequence[tuple[str, Mapping[str, object]]],
    *,
    enterprise: str | None = None,
    answers: Mapping[str, object] | None = None,
    **extra: object,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc = declaration_document(credit_code(n), enterprise or f"兰溪测试企业{n}号", year, claims, answers=answers, **extra)  # type: ignore[arg-type]
    return write_declaration(folder / name, doc)
