"""Build the shipped add-in files: the classic macro workbook and the icons.

    python addin/build_addin.py

* ``addin/lanxi-xl.xlsm`` – classic xlwings (Windows Excel + Python on the PC).
  Built from the standalone quickstart workbook of the installed xlwings (what
  ``xlwings quickstart --standalone`` copies; it carries xlwings' VBA module, so no
  xlwings add-in is needed): its ``xlwings.conf`` sheet is activated with
  ``UDF Modules = lanxi_xl.udfs``, and sheets with instructions and an example are
  added. openpyxl keeps the VBA project (keep_vba=True).
* ``addin/icons/icon-{16,32,64,80}.png`` – the Office add-in's icons.

The example sheet's amounts are *formulas*, computed by Excel; no figure is written.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import openpyxl
import xlwings
from openpyxl.styles import Alignment, Font, PatternFill

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKBOOK = HERE / "lanxi-xl.xlsm"
UDF_MODULE = "lanxi_xl.udfs"
TEMPLATE = Path(xlwings.__file__).parent / "quickstart_standalone.xlsm"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

INSTRUCTIONS = [
    "兰溪电商政策函数（经典 xlwings 版，Windows Excel）",
    "",
    "一、安装（每台电脑一次）",
    "1. 安装 Python 3.11 或以上版本，并在 lanxi-xl 项目目录的命令行中执行：pip install .",
    "2. Excel：文件 → 选项 → 信任中心 → 信任中心设置 → 宏设置，勾选“信任对 VBA 工程对象模型的访问”。",
    "3. 如电脑上的 Python 不叫 python，请在“xlwings.conf”工作表把 Interpreter_Win 改为 python.exe 的完整路径。",
    "",
    "二、导入函数（每次升级 lanxi-xl 后做一次）",
    "4. 打开本工作簿，启用宏；按 Alt+F8，运行 ImportPythonUDFs。",
    "5. 按 Ctrl+Alt+F9 重新计算，“示例”工作表中的金额即显示出来。",
    "",
    "三、使用",
    "6. 在单元格输入 =LANXI_ 即可看到全部函数（类别：兰溪电商政策），按 Ctrl+A 打开函数向导查看每个参数的说明。",
    "7. 参数可以是单元格，也可以是整列区域：=LANXI_CROSSBORDER(B2:B1000) 的结果自动向下溢出（Excel 365）。",
    "8. 空白单元格得到空白结果；填错的数字（负数、文字、入驻率填 85 而不是 0.85）在单元格中显示中文原因。",
    "9. =LANXI_EXPLAIN(\"CROSSBORDER\", B2) 说明一家企业的计算过程；=LANXI_POLICY() 显示现行政策。",
    "",
    "本工作簿的函数由 lanxi_xl.udfs 提供（见“xlwings.conf”工作表的 UDF Modules）。",
]

# One example row per function: (function, [(header, value), ...]).
# The values are sample declarations, not policy figures.
EXAMPLES = [
    ("LANXI_PARK", [("占地面积（亩）", 26.5), ("建筑面积（㎡）", 18_600), ("入驻率", 0.85), ("园区销售额（元）", 61_800_000)]),
    ("LANXI_DEMO", [("称号级别", "省级")]),
    ("LANXI_RENT", [("办公面积（㎡）", 120), ("办公租金（元）", 21_600), ("仓储面积（㎡）", 60),
                    ("仓储租金（元）", 4_800), ("线上销售额（元）", 3_150_000), ("月数", 12)]),
    ("LANXI_PLATFORM", [("平台投资额（元）", 860_000), ("平台销售额（元）", 41_700_000)]),
    ("LANXI_AGENCY", [("代运营服务收入（元）", 623_000)]),
    ("LANXI_LIVESTREAM", [("直播销售额（元）", 12_400_000)]),
    ("LANXI_CROSSBORDER", [("跨境B2C销售额（美元）", 1_230_000)]),
    ("LANXI_TRADEMARK", [("境外商标注册费（元）", 9_800), ("以前已获扶持（元）", 0)]),
    ("LANXI_MARKETING", [("数字营销服务费（元）", 61_500)]),
    ("LANXI_WAREHOUSE_BUILD", [("年出口额（美元）", 318_000), ("建设成本（元）", 1_150_000), ("运营年数", 2)]),
    ("LANXI_WAREHOUSE_USE", [("年销售额（美元）", 176_000), ("仓储服务成本（元）", 94_000)]),
    ("LANXI_AGRI", [("农特产品线上销售额（元）", 612_000)]),
    ("LANXI_TOWN", [("省级称号", "电商镇")]),
]
EVENT_COSTS = [31_200, 52_800, 12_600]


def _png(size: int, rgb: tuple[int, int, int]) -> bytes:
    """A square PNG: a coloured tile with a white bar (no imaging library needed)."""
    rows = []
    for y in range(size):
        row = bytearray([0])  # filter: none
        for x in range(size):
            edge = size // 8
            bar = size * 3 // 8 <= y < size * 5 // 8 and edge <= x < size - edge
            row += bytes((255, 255, 255) if bar else rgb)
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + chunk(b"IEND", b"")
    )


def build_icons(folder: Path = HERE / "icons") -> None:
    folder.mkdir(exist_ok=True)
    for size in (16, 32, 64, 80):
        (folder / f"icon-{size}.png").write_bytes(_png(size, (11, 83, 148)))


def build_workbook(target: Path = WORKBOOK) -> Path:
    from lanxi_xl import udfs

    wb = openpyxl.load_workbook(TEMPLATE, keep_vba=True)
    conf = wb["_xlwings.conf"]
    conf.title = "xlwings.conf"  # the leading underscore deactivates the sheet
    for row in conf.iter_rows(min_col=1, max_col=2):
        if row[0].value == "UDF Modules":
            row[1].value = UDF_MODULE
    bold = Font(bold=True)
    head_fill = PatternFill("solid", fgColor="DDEBF7")

    example = wb["Sheet1"]
    example.title = "示例"
    example["A1"] = "函数"
    example["B1"] = "结果（元）"
    example["C1"] = "参数（示例申报数据，可修改）"
    for cell in example[1]:
        cell.font = bold
        cell.fill = head_fill
    row = 2
    first_input: dict[str, str] = {}
    for name, inputs in EXAMPLES:
        spec = udfs.specs()[name]
        example.cell(row, 1, f"{name}：{udfs.description(spec).split('：')[0]}")
        refs = []
        for i, (header, value) in enumerate(inputs):
            col = 3 + 2 * i
            example.cell(row, col, header).font = Font(color="666666")
            example.cell(row, col + 1, value)
            refs.append(example.cell(row, col + 1).coordinate)
        first_input[name] = refs[0]
        example.cell(row, 2, f"={name}({','.join(refs)})").font = bold
        row += 1
    spec = udfs.specs()["LANXI_EVENTS"]
    example.cell(row, 1, f"LANXI_EVENTS：{udfs.description(spec).split('：')[0]}")
    example.cell(row, 3, "各场活动实际支出（元）").font = Font(color="666666")
    for i, cost in enumerate(EVENT_COSTS):
        example.cell(row, 4 + i, cost)
    last = example.cell(row, 3 + len(EVENT_COSTS)).coordinate
    example.cell(row, 2, f"=LANXI_EVENTS(D{row}:{last})").font = bold
    row += 2
    example.cell(row, 1, "说明：")
    example.cell(row, 2, f'=LANXI_EXPLAIN("CROSSBORDER",{first_input["LANXI_CROSSBORDER"]})')
    example.cell(row, 2).alignment = Alignment(wrap_text=True, vertical="top")
    example.cell(row + 1, 1, "现行政策：")
    example.cell(row + 1, 2, "=LANXI_POLICY()")
    example.column_dimensions["A"].width = 48
    example.column_dimensions["B"].width = 16
    for col in "CDEFGHIJKLMN":
        example.column_dimensions[col].width = 16

    guide = wb.create_sheet("使用说明", 0)
    for i, line in enumerate(INSTRUCTIONS, start=1):
        if line:
            guide.cell(i, 1, line)
    guide["A1"].font = Font(bold=True, size=14)
    guide.column_dimensions["A"].width = 120
    wb.active = 0
    wb.save(target)
    return target


if __name__ == "__main__":
    build_icons()
    print(build_workbook())
