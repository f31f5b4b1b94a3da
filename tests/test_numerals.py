from decimal import Decimal

import pytest

from lanxi_xl.numerals import describe_number_text, read_loose_number


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("60万", "600000"), ("60万元", "600000"), ("六十万", "600000"), ("1,000", "1000"),
        ("1.2亿", "120000000"), ("一千二百万", "12000000"), ("十五", "15"), ("１２３", "123"),
        ("￥1,234.50", "1234.50"), ("85%", "0.85"), ("两万", "20000"), ("三亿五千万", "350000000"),
        ("陆拾万", "600000"), (" 600000 ", "600000"), ("5千万", "50000000"),
    ],
)
def test_reads_what_people_type(text: str, value: str) -> None:
    assert read_loose_number(text) == Decimal(value)


@pytest.mark.parametrize("text", ["abc", "", "万", "见附件", "约"])
def test_not_a_number(text: str) -> None:
    assert read_loose_number(text) is None


def test_message_says_what_was_found_and_expected() -> None:
    msg = describe_number_text("60万", "元")
    assert "“60万”" in msg and "600000" in msg
    assert "阿拉伯数字" in describe_number_text("见附件")
