"""统一社会信用代码 (GB 32100-2015): 18 characters, the last one a check character.

One place for the rule: the JSON Schemas, the templates' check formula, the checker
and the registry all use it. A mistyped code would otherwise become a second
enterprise and escape the once-only and yearly-cap rules.
"""

from __future__ import annotations

import re

from .errors import InputError

CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I, O, Z, S, V
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
PATTERN = "^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$"


def check_char(first17: str) -> str | None:
    """The 18th character for the first 17 (None: a character outside the code's alphabet)."""
    total = 0
    for ch, weight in zip(first17, WEIGHTS):
        pos = CHARS.find(ch)
        if pos < 0:
            return None
        total += pos * weight
    return CHARS[(31 - total % 31) % 31]


def is_valid(value: object) -> bool:
    if not isinstance(value, str) or not re.fullmatch(PATTERN, value):
        return False
    return check_char(value[:17]) == value[17]


def normalize(raw: object) -> str:
    """The code in canonical form (upper case, no spaces), or InputError naming the problem."""
    text = "" if raw is None else str(raw).strip().replace(" ", "").upper()
    if not text:
        raise InputError("CREDIT_CODE_MISSING", "缺少统一社会信用代码", field="credit_code")
    if len(text) != 18 or any(c not in CHARS for c in text):
        raise InputError(
            "CREDIT_CODE_INVALID",
            f"统一社会信用代码应为18位数字或大写字母（不含I、O、Z、S、V），收到“{raw}”",
            field="credit_code",
            value=raw,
        )
    if check_char(text[:17]) != text[17]:
        raise InputError(
            "CREDIT_CODE_CHECKSUM",
            f"统一社会信用代码“{text}”的校验位不正确，请核对是否填错",
            field="credit_code",
            value=raw,
        )
    return text
