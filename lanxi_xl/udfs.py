"""兰溪电商政策 Excel 函数（兰政办发〔2022〕3号）。

Every function here is an ordinary Python function with a fixed name
(``LANXI_CROSSBORDER`` …) that returns the award in yuan. The same functions are
what Excel calls, in two ways:

* classic xlwings (Windows Excel + local Python): the macro workbook's
  ``xlwings.conf`` sheet names this module under ``UDF Modules``; Excel calls the
  functions as ``=LANXI_CROSSBORDER(B2)``;
* xlwings Server (Office.js): :mod:`lanxi_xl.server` registers the same
  :data:`FUNCTIONS` under the namespace ``LANXI`` (``=LANXI.CROSSBORDER(B2)``).

Shapes: a scalar argument gives a scalar, a range (list of rows) gives a list of
rows of the same shape, so one formula spills over a whole column. Scalars and
single cells are broadcast against ranges. A blank row gives a blank result, never 0.

Errors: bad input never becomes a silent 0. In plain Python the engine's
:class:`~lanxi_xl.errors.InputError` is raised (for a range it names the row and
column); in classic Excel the cell shows the Chinese message; xlwings Server turns
it into ``#VALUE!`` carrying the message (see :mod:`lanxi_xl.server`).

No award figure appears here: amounts come from :mod:`lanxi_xl.rules`, help texts
from the policy data (clause titles, fact labels and help).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import xlwings as xw

from .errors import InputError
from .facts import is_blank
from .money import format_amount
from .policy import Clause, Policy, current_policy
from .rules import amount as _amount
from .rules import amount_function
from .rules import compute as _compute

__all__ = [
    "CATEGORY",
    "FUNCTIONS",
    "LANXI_AGENCY",
    "LANXI_AGRI",
    "LANXI_CROSSBORDER",
    "LANXI_DEMO",
    "LANXI_EVENTS",
    "LANXI_EXPLAIN",
    "LANXI_LIVESTREAM",
    "LANXI_MARKETING",
    "LANXI_PARK",
    "LANXI_PLATFORM",
    "LANXI_POLICY",
    "LANXI_RENT",
    "LANXI_TOWN",
    "LANXI_TRADEMARK",
    "LANXI_WAREHOUSE_BUILD",
    "LANXI_WAREHOUSE_USE",
    "OTHER_FUNCTIONS",
    "call_by_name",
    "description",
    "evaluate",
    "explain",
    "explain_by_name",
    "explain_lines",
    "param_doc",
    "policy_text",
    "resolve",
    "specs",
]

CATEGORY = "兰溪电商政策"
PREFIX = "LANXI_"
MAX_DOC = 255  # Excel's limit for function and argument descriptions


# --- what each function computes ------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """How one Excel function maps onto the policy's clauses.

    kind ``facts``: one clause, every argument is a fact of it.
    kind ``sum``: one clause per argument, the awards of the filled ones are added.
    kind ``items``: one clause, the single argument is a list of item rows.
    """

    name: str
    kind: str
    clauses: tuple[str, ...]
    params: tuple[str, ...]
    facts: tuple[tuple[str, str], ...]  # per parameter: (clause id, fact name)

    @property
    def short_name(self) -> str:
        """The name under the LANXI namespace of xlwings Server: ``CROSSBORDER``."""
        return self.name[len(PREFIX):]


FUNCTIONS: dict[str, Callable[..., Any]] = {}
"""Award functions by Python name, in article order (LANXI_EXPLAIN/LANXI_POLICY excluded)."""

_SPECS: dict[str, Spec] = {}


def _award_function(*clauses: str, kind: str = "facts", facts: Sequence[str] | None = None):
    """Register an award function: spec, policy-derived help, xlwings decorators."""

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        params = tuple(inspect.signature(func).parameters)
        if kind == "sum":
            pairs = tuple((cid, fact) for cid, fact in zip(clauses, facts or params))
        else:
            pairs = tuple((clauses[0], fact) for fact in (facts or params))
        spec = Spec(func.__name__, kind, clauses, params, pairs)
        _SPECS[spec.name] = spec
        FUNCTIONS[spec.name] = func
        func.__doc__ = f"{description(spec)}\n\n{inspect.cleandoc(func.__doc__ or '')}"
        return _decorate(func, spec)

    return register


def _decorate(func: Callable[..., Any], spec: Spec | None) -> Callable[..., Any]:
    """Apply xlwings' decorators (classic: Excel function wizard; no-op elsewhere).

    ``xw.arg`` must come first: it (re)creates the metadata with default options,
    which ``xw.func`` then completes with the category and the Excel name.
    """
    for param in inspect.signature(func).parameters.values():
        doc = param_doc(spec, param.name) if spec else OTHER_FUNCTIONS[func.__name__][param.name]
        options: dict[str, Any] = {"doc": doc}
        if spec is not None:
            # Keep ranges 2-D so a column stays a column; err_to_str lets an input
            # error cell (#N/A…) reach the engine and be reported instead of blanked.
            options.update(ndim=2, err_to_str=True)
        func = xw.arg(param.name, **options)(func)
    return xw.func(category=CATEGORY, name=func.__name__[len(PREFIX):])(func)


# --- help texts from the policy data --------------------------------------------------


def _policy() -> Policy:
    return current_policy()


def _clause(cid: str) -> Clause:
    return _policy().clause(cid)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_DOC else text[: MAX_DOC - 1] + "…"


def description(spec: Spec) -> str:
    """One line for the function wizard: article, clause title, what is returned."""
    policy = _policy()
    first = _clause(spec.clauses[0])
    parts = "与".join(f"{_clause(c).cite}“{_clause(c).title}”" for c in spec.clauses)
    total = "之和" if spec.kind == "sum" else ""
    if spec.kind == "items":
        shape = "参数为一列区域（每场活动一格），返回一个金额"
    else:
        shape = "参数可为单元格或整列区域（结果同样大小），空白返回空白"
    return _clip(f"{policy.id}{parts}{total}：{first.recipient}应得金额（元）。{shape}。")


def param_doc(spec: Spec, param: str) -> str:
    """Argument help: the fact's label, unit and help from the policy data."""
    cid, fact = spec.facts[spec.params.index(param)]
    clause = _clause(cid)
    fs = clause.facts[fact]
    if fs.type == "items":
        first = next(iter(fs.items.values()))
        flag = next((i for i in fs.items.values() if i.type == "bool"), None)
        only = f"；只填{flag.label}的活动（{flag.help}）" if flag else ""
        text = f"{first.label}（{first.unit}）：{first.help}，每场一格，可选一列区域{only}"
    elif fs.type == "choice":
        options = "、".join(c.label for c in fs.choices)
        short = "、".join(a for c in fs.choices for a in c.aliases if a.isascii() or len(a) < len(c.label))
        text = f"{fs.label}：{fs.help}。填写{options}（也可填 {short}）"
    else:
        unit = f"（{fs.unit}）" if fs.unit else ""
        text = f"{fs.label}{unit}：{fs.help}"
    if spec.kind == "sum":
        text = f"{clause.cite}：{text}"
    return _clip(text)


# --- evaluation ----------------------------------------------------------------------


def _shape(value: object) -> tuple[int, ...] | None:
    """None for a scalar, (n,) for a flat list, (rows, cols) for a list of rows."""
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], (list, tuple)):
            return (len(value), len(value[0]))
        return (len(value),)
    return None


def _flatten(value: object) -> list[object]:
    """The cells of a scalar, a flat list or a list of rows, in reading order."""
    if not isinstance(value, (list, tuple)):
        return [value]
    return [c for row in value for c in (row if isinstance(row, (list, tuple)) else [row])]


def _clause_facts(spec: Spec, values: Sequence[object]) -> list[tuple[str, dict[str, object] | None]] | None:
    """The engine's input for one enterprise (one row of arguments).

    One (clause id, facts) per clause of the function; facts is None for a clause of
    ``LANXI_PLATFORM`` whose argument is blank. None when every argument is blank.
    Blank facts are left out: the engine reports a missing one or uses its default.
    """
    if spec.kind == "items":
        cells = _flatten(values[0])
        if all(is_blank(c) for c in cells):
            return None
        return [(spec.clauses[0], {spec.facts[0][1]: cells})]
    if all(is_blank(v) for v in values):
        return None
    if spec.kind == "sum":
        return [(cid, None if is_blank(v) else {fact: v}) for (cid, fact), v in zip(spec.facts, values)]
    return [(spec.clauses[0], {fact: v for (_, fact), v in zip(spec.facts, values) if not is_blank(v)})]


def _row_facts(spec: Spec, values: Sequence[object], policy: Policy) -> Decimal | None:
    """The award for one enterprise (one row of arguments); None when all blank."""
    parts = _clause_facts(spec, values)
    if parts is None:
        return None
    return sum((_amount(cid, f, policy=policy) for cid, f in parts if f is not None), Decimal(0))


def _row_function(spec: Spec, policy: Policy) -> Callable[[Sequence[object]], Decimal | None]:
    """:func:`_row_facts` for ``spec``; the one-figure functions (most spills) without
    the generic bookkeeping, which at 100,000 rows costs as much as the transport."""
    if spec.kind != "facts" or len(spec.facts) != 1:
        return lambda values: _row_facts(spec, values, policy)
    ((cid, fact),) = spec.facts
    award_of = amount_function(cid, policy=policy)

    def one_figure(values: Sequence[object]) -> Decimal | None:
        value = values[0]
        return None if is_blank(value) else award_of({fact: value})

    return one_figure


@dataclass
class CellError:
    """Where a range held bad input: 0-based row and column, and the engine's error."""

    row: int
    col: int
    error: InputError


_MISS = object()


def evaluate(
    name: str,
    args: Sequence[object],
    convert: Callable[[Decimal], Any] | None = None,
) -> tuple[Any, list[CellError]]:
    """Compute ``name`` over scalar or range arguments.

    Returns ``(result, errors)``: ``result`` has the shape of the range arguments
    (a scalar when all are scalars); blank rows give None; a row with bad input gives
    None in ``result`` and an entry in ``errors``. ``convert`` maps each Decimal
    amount (e.g. ``float`` for Excel). Scalar bad input raises :class:`InputError`.
    Identical rows are computed once: a column of 100,000 enterprises repeats many
    figures (blanks, zeros, round sums), and the engine call dominates a cell's cost.
    """
    spec = _spec(name)
    _check_arity(spec, args)
    convert = convert or _identity
    policy = _policy()  # once per call, not per cell
    shapes = [_shape(a) for a in args]
    grid = {s for s in shapes if s is not None and s != (1, 1)}
    if spec.kind == "items" or all(s is None for s in shapes):
        value = _row_facts(spec, args, policy)
        return (None if value is None else convert(value)), []
    if len(grid) > 1:
        sizes = "、".join(_size_zh(s) for s in sorted(grid))
        raise InputError(
            "RANGE_SHAPE_MISMATCH",
            f"{spec.name} 的区域参数大小不一致（{sizes}），请选择行数、列数相同的区域",
        )
    shape = grid.pop() if grid else (1, 1)
    row_award = _row_function(spec, policy)
    memo: dict[object, Any] = {}
    errors: list[CellError] = []

    def cell(values: tuple[object, ...], row: int, col: int) -> Any:
        """One enterprise: the converted amount, or None (blank or bad: see errors)."""
        key: object = tuple([(v.__class__, v) for v in values])  # keeps True apart from 1
        try:
            hit = memo.get(key, _MISS)
        except TypeError:  # an unhashable cell value: computed without the memo
            hit, key = _MISS, None
        if hit is _MISS:
            try:
                value = row_award(values)
                hit = None if value is None else convert(value)
            except InputError as exc:
                hit = exc
            if key is not None:
                memo[key] = hit
        if hit.__class__ is InputError:
            errors.append(CellError(row, col, hit))
            return None
        return hit

    if len(args) == 1 and len(shape) == 2:
        # The common spill, one column of one figure: no per-cell getters.
        (matrix,) = args
        result = [[cell((v,), r, c) for c, v in enumerate(line)] for r, line in enumerate(matrix)]
        return result, errors
    getters = [_getter(a, s) for a, s in zip(args, shapes)]
    if len(shape) == 1:
        return [cell(tuple([g(i, 0) for g in getters]), i, 0) for i in range(shape[0])], errors
    rows, cols = shape
    result = [[cell(tuple([g(r, c) for g in getters]), r, c) for c in range(cols)] for r in range(rows)]
    return result, errors


def _identity(value: Decimal) -> Decimal:
    return value


def _size_zh(shape: tuple[int, ...]) -> str:
    return f"{shape[0]}个" if len(shape) == 1 else f"{shape[0]}行×{shape[1]}列"


def _getter(arg: object, shape: tuple[int, ...] | None) -> Callable[[int, int], object]:
    """Cell (row, col) of an argument: scalars and 1×1 ranges are broadcast."""
    if shape is None:
        return lambda r, c: arg
    if shape == (1, 1):
        value = arg[0][0]  # type: ignore[index]
        return lambda r, c: value
    if len(shape) == 1:
        return lambda r, c: arg[r]  # type: ignore[index]
    return lambda r, c: arg[r][c]  # type: ignore[index]


def _check_arity(spec: Spec, args: Sequence[object]) -> None:
    if len(args) != len(spec.params):
        names = "、".join(spec.params)
        raise InputError(
            "WRONG_ARGUMENT_COUNT",
            f"{spec.name} 需要 {len(spec.params)} 个参数（{names}），收到 {len(args)} 个",
            function=spec.name,
        )


def _spec(name: str) -> Spec:
    return _SPECS[resolve(name)]


def resolve(name: str) -> str:
    """The Python name for ``CROSSBORDER``, ``lanxi.crossborder``, ``LANXI_CROSSBORDER`` …"""
    text = str(name).strip().lstrip("=").split("(")[0].strip().upper()
    for prefix in ("LANXI.", PREFIX):
        if text.startswith(prefix):
            text = text[len(prefix):]
    candidate = PREFIX + text
    if candidate in _SPECS or candidate in OTHER_FUNCTIONS:
        return candidate
    known = "、".join(FUNCTIONS)
    raise InputError("UNKNOWN_FUNCTION", f"没有名为“{name}”的兰溪政策函数，可用的函数：{known}", function=name)


# --- how each caller sees results and errors ------------------------------------------


def _classic_excel() -> bool:
    """True inside the classic xlwings COM server that Excel starts for UDFs."""
    com = sys.modules.get("xlwings.com_server")
    loop = getattr(com, "loop", None)
    return bool(loop is not None and loop.is_running())


def _located(error: CellError) -> InputError:
    exc = error.error
    where = f"第{error.row + 1}行第{error.col + 1}列"
    return InputError(exc.code, f"{where}：{exc.message}", row=error.row + 1, col=error.col + 1, **exc.details)


def _run(func: Callable[..., Any], *args: object) -> Any:
    name = func.__name__
    if not _classic_excel():
        result, errors = evaluate(name, args)
        if errors:
            raise _located(errors[0])
        return result
    # Classic Excel: numbers as float, bad input as its message in the cell.
    try:
        result, errors = evaluate(name, args, float)
    except InputError as exc:
        return str(exc)
    for err in errors:
        if isinstance(result[err.row], list):
            result[err.row][err.col] = str(err.error)
        else:
            result[err.row] = str(err.error)
    return result


# --- the award functions ---------------------------------------------------------------


@_award_function("1")
def LANXI_PARK(land_mu, floor_m2, occupancy, sales):
    """第1条 电子商务园区建设奖励。入驻率填小数（85% 即 0.85），填 85 会报错。"""
    return _run(LANXI_PARK, land_mu, floor_m2, occupancy, sales)


@_award_function("2")
def LANXI_DEMO(level):
    """第2条 电子商务示范创建奖励：级别填“国家级”或“省级”。"""
    return _run(LANXI_DEMO, level)


@_award_function("3")
def LANXI_RENT(office_m2, office_rent, storage_m2, storage_rent, online_sales, months):
    """第3条 入驻电商园区租金补助：租金为当年实际支付的金额。"""
    return _run(LANXI_RENT, office_m2, office_rent, storage_m2, storage_rent, online_sales, months)


@_award_function("4.1", "4.2", kind="sum", facts=("investment", "platform_sales"))
def LANXI_PLATFORM(investment, platform_sales):
    """第4条 电子商务平台奖励：第1款投资奖励与第2款销售额奖励之和；空白的一项不计。"""
    return _run(LANXI_PLATFORM, investment, platform_sales)


@_award_function("5")
def LANXI_AGENCY(service_revenue):
    """第5条 电子商务代运营企业奖励。"""
    return _run(LANXI_AGENCY, service_revenue)


@_award_function("6")
def LANXI_LIVESTREAM(sales):
    """第6条 直播电商奖励（分档）。"""
    return _run(LANXI_LIVESTREAM, sales)


@_award_function("7", kind="items", facts=("events",))
def LANXI_EVENTS(costs):
    """第7条 电商活动补助：costs 为一家机构当年每场已备案活动的实际支出（一列区域），返回一个金额。"""
    return _run(LANXI_EVENTS, costs)


@_award_function("8")
def LANXI_CROSSBORDER(usd_sales):
    """第8条 跨境电商销售奖励：销售额以美元填写（不折算人民币）。"""
    return _run(LANXI_CROSSBORDER, usd_sales)


@_award_function("9")
def LANXI_TRADEMARK(fees, received_before):
    """第9条 跨境电商境外商标注册扶持：received_before 为以前已获扶持金额，空白按 0。"""
    return _run(LANXI_TRADEMARK, fees, received_before)


@_award_function("10")
def LANXI_MARKETING(service_fees):
    """第10条 数字营销推广奖励。"""
    return _run(LANXI_MARKETING, service_fees)


@_award_function("11.1")
def LANXI_WAREHOUSE_BUILD(usd_exports, build_cost, years_operating):
    """第11条第1款 公共海外仓建设补助：出口额以美元填写。"""
    return _run(LANXI_WAREHOUSE_BUILD, usd_exports, build_cost, years_operating)


@_award_function("11.2")
def LANXI_WAREHOUSE_USE(usd_sales, storage_cost):
    """第11条第2款 公共海外仓应用补助：销售额以美元填写。"""
    return _run(LANXI_WAREHOUSE_USE, usd_sales, storage_cost)


@_award_function("12")
def LANXI_AGRI(online_sales):
    """第12条 农特产品线上销售奖励（分档）。"""
    return _run(LANXI_AGRI, online_sales)


@_award_function("13")
def LANXI_TOWN(title):
    """第13条 电子商务示范镇村奖励：称号填“电商镇”或“示范村”（可带“省级”）。"""
    return _run(LANXI_TOWN, title)


# --- explanation and policy ---------------------------------------------------------------

OTHER_FUNCTIONS: dict[str, dict[str, str]] = {  # name -> argument help
    "LANXI_EXPLAIN": {
        "function_name": "要解释的函数名，如 CROSSBORDER 或 LANXI_CROSSBORDER",
        "args": "与该函数相同的参数（一家企业，即一行）",
    },
    "LANXI_POLICY": {},
}


def _single_row(value: object) -> object:
    """A 1×1 range as its value; longer ranges stay lists."""
    while isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    return value


def explain(name: str, args: Sequence[object]) -> str:
    """The Chinese explanation of one enterprise's award under function ``name``:
    which tier or cap applied, or why it is zero."""
    spec = _spec(name)
    _check_arity(spec, args)
    if spec.kind != "items":
        args = [_single_row(a) for a in args]
        if any(isinstance(a, (list, tuple)) for a in args):
            raise InputError(
                "EXPLAIN_ONE_ROW",
                f"LANXI_EXPLAIN 一次只解释一家企业（{spec.name}）：请选择一行的单元格，而不是多行区域",
            )
    parts = _clause_facts(spec, args)
    if parts is None:
        return f"{spec.name}：参数全部为空白，不计算（结果为空白，而不是 0）。"
    texts = []
    total = Decimal(0)
    for cid, facts in parts:
        if facts is None:
            clause = _clause(cid)
            texts.append(f"{clause.cite} {clause.title}：参数为空白，不计算。")
            continue
        award = _compute(cid, facts, policy=_policy())
        total += award.amount
        texts.append(award.explain())
    if len(parts) > 1:
        texts.append(f"{spec.name} 合计：{format_amount(total)}")
    return "\n\n".join(texts)


def explain_lines(name: str, args: Sequence[object]) -> list[list[str]]:
    """The explanation as a column, one line a row: how Excel shows it (spilled)."""
    return [[line] for line in explain(name, args).splitlines()]


def LANXI_EXPLAIN(function_name, *args):
    """说明某个兰溪政策函数对一家企业的计算过程：适用哪一档、哪个上限、为什么是 0。"""
    if not _classic_excel():
        return explain(function_name, args)
    try:
        return explain_lines(function_name, args)
    except InputError as exc:
        return str(exc)


def policy_text(policy: Policy | None = None) -> str:
    """The policy in force, its issuer and the date it took effect (LANXI_POLICY)."""
    policy = policy or _policy()
    return f"{policy.id}《{policy.title}》，{policy.issuer}印发，自{policy.effective_from_zh}起实行"


def LANXI_POLICY():
    """当前适用的政策文件及其施行日期。"""
    return policy_text()


LANXI_EXPLAIN = _decorate(LANXI_EXPLAIN, None)
LANXI_POLICY = _decorate(LANXI_POLICY, None)


# --- the command line -----------------------------------------------------------------


def call_by_name(name: str, args: Iterable[str]) -> Any:
    """Run a function by name with text arguments, as ``lanxi-xl calc`` does.

    ``call_by_name("LANXI_CROSSBORDER", ["1200000"])`` -> ``Decimal("100000.00")``.
    Names may omit the ``LANXI_`` prefix. Blank text is a blank cell (returns None).
    ``LANXI_EVENTS`` takes every argument as one event cost. ``LANXI_POLICY`` and
    ``LANXI_EXPLAIN`` are accepted too (they return text). Raises InputError.
    """
    python_name = resolve(name)
    values = list(args)
    if python_name == "LANXI_POLICY":
        if values:
            raise InputError("WRONG_ARGUMENT_COUNT", "LANXI_POLICY 不需要参数")
        return policy_text()
    if python_name == "LANXI_EXPLAIN":
        if not values:
            raise InputError("WRONG_ARGUMENT_COUNT", "LANXI_EXPLAIN 需要函数名和该函数的参数")
        return explain_by_name(values[0], values[1:])
    if _SPECS[python_name].kind == "items":
        values = [values]
    result, errors = evaluate(python_name, values)
    if errors:
        raise _located(errors[0])
    return result


def explain_by_name(name: str, args: Iterable[str]) -> str:
    """The explanation for ``lanxi-xl explain LANXI_CROSSBORDER 1200000``."""
    python_name = resolve(name)
    if python_name in OTHER_FUNCTIONS:
        raise InputError("UNKNOWN_FUNCTION", f"{python_name} 不是奖励函数，无需解释")
    values = list(args)
    if _SPECS[python_name].kind == "items":
        values = [values]
    return explain(python_name, values)


def specs() -> Mapping[str, Spec]:
    """Every award function's spec by Python name (for the server and the docs)."""
    return dict(_SPECS)
