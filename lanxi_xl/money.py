"""Exact money: ``Decimal`` yuan rounded to the fen with ROUND_HALF_UP.

Floats never carry an amount inside the engine: a float from Excel is turned into
the Decimal of its shortest repr (0.85 -> Decimal("0.85")), which is the number the
person typed, not its binary approximation.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

FEN = Decimal("0.01")
ZERO = Decimal(0)


def round_money(value: Decimal) -> Decimal:
    """Round to 0.01 yuan, half up (四舍五入到分)."""
    return value.quantize(FEN, rounding=ROUND_HALF_UP)


def to_decimal(value: object) -> Decimal | None:
    """The exact Decimal of a number, or None when ``value`` is not a finite number.

    Accepts int, float, Decimal and plain numeric strings ("1200000", " 0.85 ").
    Strings with grouping commas, units or Chinese numerals are *not* numbers here:
    the caller reports them, because guessing what "60万" meant is how silent
    errors get paid out.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        if not text or not all(c in "0123456789.+-eE" for c in text):
            return None
        try:
            result = Decimal(text)
        except InvalidOperation:
            return None
    else:
        return None
    if not result.is_finite():
        return None
    return result


def format_amount(value: Decimal, unit: str = "元") -> str:
    """``Decimal("1234567.5")`` -> ``"1,234,567.50元"``: how amounts read in explanations."""
    if unit in ("元", "美元"):
        return f"{round_money(value):,.2f}{unit}"
    normalized = value.normalize()
    text = f"{normalized:,f}" if normalized == normalized.to_integral() else f"{normalized:,}"
    return f"{text}{unit}"


def format_rate(value: Decimal) -> str:
    """``Decimal("0.85")`` -> ``"85%"``."""
    pct = (value * 100).normalize()
    return f"{pct:f}%"
