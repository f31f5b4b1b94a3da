"""Reading numbers people type as text, to tell them what we found and what we expect.

A returned form may say ``60万``, ``六十万``, ``1,000`` or ``１２３`` where a number
belongs. The checker never *uses* such a reading (guessing pays out errors); it
quotes it in the error message so the enterprise can fix the cell quickly.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

DIGITS = {
    "零": 0, "〇": 0, "一": 1, "壹": 1, "二": 2, "贰": 2, "两": 2, "三": 3, "叁": 3, "四": 4, "肆": 4,
    "五": 5, "伍": 5, "六": 6, "陆": 6, "七": 7, "柒": 7, "八": 8, "捌": 8, "九": 9, "玖": 9,
}
SMALL_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
BIG_UNITS = {"万": 10**4, "萬": 10**4, "亿": 10**8, "億": 10**8}
CURRENCY_WORDS = ("人民币", "美元", "美金", "元", "圆", "块", "USD", "RMB", "CNY", "$", "￥", "¥")
FULL_WIDTH = str.maketrans("０１２３４５６７８９．，－", "0123456789.,-")


def _chinese_integer(text: str) -> int | None:
    """六十万 -> 600000, 一千二百万 -> 12000000, 十五 -> 15 (None if not a numeral)."""
    total, section, digit = 0, 0, None
    for ch in text:
        if ch in DIGITS or ch.isascii() and ch.isdigit():
            d = DIGITS[ch] if ch in DIGITS else int(ch)
            digit = d if digit is None else digit * 10 + d
        elif ch in SMALL_UNITS:
            section += (1 if digit is None else digit) * SMALL_UNITS[ch]
            digit = None
        elif ch in BIG_UNITS:
            section += digit or 0
            total = (total + section) * BIG_UNITS[ch] if BIG_UNITS[ch] > 10**4 else total + section * BIG_UNITS[ch]
            section, digit = 0, None
        else:
            return None
    return total + section + (digit or 0)


def read_loose_number(text: str) -> Decimal | None:
    """The number a person most likely meant by ``text``, or None if it is not one."""
    s = text.strip().translate(FULL_WIDTH).replace(" ", "")
    for word in CURRENCY_WORDS:
        s = s.replace(word, "")
    if not s:
        return None
    percent = s.endswith("%")
    if percent:
        s = s[:-1]
    multiplier = Decimal(1)
    while s and s[-1] in BIG_UNITS and any(c.isdigit() for c in s[:-1]):
        multiplier *= BIG_UNITS[s[-1]]
        s = s[:-1]
    s = s.replace(",", "")
    value: Decimal | None
    try:
        value = Decimal(s)
        if not value.is_finite():
            return None
    except InvalidOperation:
        n = _chinese_integer(s)
        value = Decimal(n) if n is not None and any(c in DIGITS or c in SMALL_UNITS or c.isdigit() for c in s) else None
    if value is None:
        return None
    value *= multiplier
    return value / 100 if percent else value


def describe_number_text(text: str, unit: str = "") -> str:
    """A Chinese sentence: what was found in a number cell and what to type instead."""
    guess = read_loose_number(text)
    shown = f"“{text}”"
    if guess is None:
        return f"填写的是文字{shown}，应填写阿拉伯数字{('（单位：' + unit + '）') if unit else ''}"
    normalized = format(guess.normalize(), "f")
    return (
        f"填写的是文字{shown}，不是数字；如指 {normalized}{unit}，请直接填写数字 {normalized}"
        "（不写“万”、单位或千位分隔符，单元格格式为数值）"
    )
