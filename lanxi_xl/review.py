"""Review: record checked declarations, then decide each year's awards across declarations.

A review of year Y (``lanxi-xl review DIR --year Y``) does two things:

1. **Record** every declaration found in DIR, each in its own transaction, idempotent by
   the file's SHA-256 (a file seen before is skipped). Where declarations come from is
   pluggable by file type (:data:`SOURCES`): ``.json`` files in the format below, and
   returned ``.xlsx``/``.xlsm``/``.xls`` workbooks through the checker (lanxi_xl.intake).
2. **Decide** year Y from everything recorded for it, in one transaction, in this order
   (docs/registry.md): for each claim in arrival order (declaration, then place in it)

   a. the declaration failed its check → not paid;
   b. the same claim already came in another file (same enterprise, year, clause and
      figures) → a duplicate, not paid;
   c. the engine (:func:`lanxi_xl.rules.compute`), including art. 15 — a disqualification
      declared in any of the enterprise's declarations of the year applies to all of its
      claims that year — and art. 9's lifetime total, fed with what the registry says was
      received before (the registry is authoritative);
   d. how often the clause may pay (``payable`` in the policy data), against awards of
      earlier years (registry and imported history): ``once`` and ``once_per_choice`` never
      twice; ``consecutive_years`` only inside the window starting the first year it was
      paid; ``per_year`` without a yearly cap once a year;
   e. ``yearly_cap``: a later declaration of the same enterprise and clause in the year is
      reduced by what was already granted that year;
   f. art. 14: within each overlap group of the policy data, per enterprise and year, only
      the highest award is paid; the others stay with the reason.

   Later years that were already decided are decided again, so they keep counting the
   right earlier awards. Deciding is deterministic: reviewing again gives the same rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from .errors import InputError, LanxiError
from .facts import coerce, disqualification_specs, is_blank
from .money import ZERO, format_amount, to_decimal
from .policy import Clause, FactSpec, Policy, find_node, parse_year, policy_for_year
from .registry import (
    CheckedDeclaration,
    Claim,
    Decision,
    DeclarationInfo,
    Grant,
    Registry,
    StoredClaim,
    StoredDecision,
    normalize_credit_code,
    open_registry,
)
from .rules import STATUS_ZH, Award, Status, compute, disqualified, fmt_fact, highest_of

# What each decision code means, for the ledger and the CLI.
OUTCOME_ZH: Mapping[str, str] = {
    "paid": "发放",
    "reduced": "发放（按每年上限核减）",
    "invalid": "不发放：申报表未通过校验",
    "error": "不发放：申报数据有误",
    "duplicate": "不发放：重复申报",
    "below_threshold": "不发放：未达到奖励条件",
    "nil": "不发放：核定金额为0",
    "not_applicable": "不发放：第15条不得享受情形",
    "once_paid": "不发放：一次性奖励已发放",
    "window_over": "不发放：超出连续补助年限",
    "lifetime_total": "不发放：累计扶持总额已用完",
    "yearly_cap": "不发放：本年度上限已用完",
    "overlap": "不发放：就高不重复",
}

# Test hook (documented in docs/registry.md): stop after recording N new declarations so
# a test can kill the process at a known point. Never set in normal use.
PAUSE_ENV = "LANXI_XL_PAUSE_AFTER"
PAUSE_MARK = "LANXI_XL_PAUSED"

MAX_JSON_BYTES = 20 * 1024 * 1024


# --- sources: a returned file -> CheckedDeclaration ---------------------------------------

Source = Callable[[Path], CheckedDeclaration]

JSON_FORMAT = "lanxi-xl.declaration/1"

DECLARATION_SCHEMA: Mapping[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "lanxi-xl 已检查的申报（一份申报文件）",
    "type": "object",
    "required": ["format", "enterprise", "year", "claims"],
    "additionalProperties": False,
    "properties": {
        "format": {"const": JSON_FORMAT},
        "file_name": {"type": "string", "minLength": 1},
        "template": {"type": ["string", "null"]},
        "valid": {"type": "boolean"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                "additionalProperties": {"type": ["string", "number", "null"]},
            },
        },
        "enterprise": {
            "type": "object",
            "required": ["credit_code", "name"],
            "additionalProperties": False,
            "properties": {"credit_code": {"type": "string"}, "name": {"type": "string", "minLength": 1}},
        },
        "year": {"type": "integer"},
        "answers": {"type": "object"},
        "claims": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["clause", "facts"],
                "additionalProperties": False,
                "properties": {"clause": {"type": "string", "minLength": 1}, "facts": {"type": "object"}},
            },
        },
        "data": {"type": "object"},
    },
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unreadable(path: Path, name: str, sha: str, code: str, message: str) -> CheckedDeclaration:
    return CheckedDeclaration(
        sha256=sha, file_name=name, template=None, valid=False,
        errors=({"code": code, "message": message},), data={}, claims=(),
    )


def read_json_declaration(path: Path, name: str | None = None) -> CheckedDeclaration:
    """One ``.json`` declaration file (format ``lanxi-xl.declaration/1``, docs/registry.md).

    Never raises for a bad file: a file that is not JSON, or not in the format, becomes
    an invalid declaration carrying the reason, so it is recorded and shown in the ledger.
    """
    name = name or path.name
    sha = sha256_of(path)
    if path.stat().st_size > MAX_JSON_BYTES:
        return _unreadable(path, name, sha, "FILE_TOO_LARGE", f"文件超过{MAX_JSON_BYTES // 1024 // 1024}MB，未读取")
    try:
        doc = json.loads(path.read_bytes().decode("utf-8-sig"), parse_float=Decimal)
    except UnicodeDecodeError:
        return _unreadable(path, name, sha, "NOT_JSON", "不是 UTF-8 编码的 JSON 文件")
    except json.JSONDecodeError as exc:
        return _unreadable(path, name, sha, "NOT_JSON", f"不是有效的 JSON 文件：第{exc.lineno}行第{exc.colno}列附近格式错误")
    problems = sorted(
        jsonschema.Draft202012Validator(DECLARATION_SCHEMA).iter_errors(doc), key=lambda e: list(map(str, e.path))
    )
    if problems:
        errs = tuple(
            {"code": "DECLARATION_FORMAT", "message": f"申报文件格式不符：{_schema_problem(e)}",
             "field": ".".join(map(str, e.path))}
            for e in problems[:20]
        )
        return CheckedDeclaration(sha, name, None, False, errs, doc if isinstance(doc, dict) else {}, ())
    errors: list[Mapping[str, str]] = [dict(e) for e in doc.get("errors", [])]
    ent = doc["enterprise"]
    try:
        code = normalize_credit_code(ent["credit_code"])
    except InputError as exc:
        errors.append({"code": exc.code, "message": exc.message, "field": "enterprise.credit_code"})
        code = None
    year = doc["year"]
    try:
        policy = policy_for_year(year)
    except InputError as exc:
        errors.append({"code": exc.code, "message": exc.message, "field": "year"})
        policy = None
    answers = doc.get("answers", {})
    claims = []
    for n, c in enumerate(doc["claims"], start=1):
        clause_id = c["clause"].strip()
        if policy is not None and clause_id not in policy.clauses:
            errors.append({"code": "UNKNOWN_CLAUSE", "message": f"第{n}项申报的条款“{clause_id}”不存在", "field": f"claims.{n}"})
            continue
        if code is not None:
            claims.append(Claim(code, ent["name"].strip(), year, clause_id, {**answers, **c["facts"]}))
    if not doc["claims"]:
        errors.append({"code": "NO_CLAIMS", "message": "申报文件中没有申报任何条款"})
    valid = bool(doc.get("valid", True)) and not errors
    return CheckedDeclaration(
        sha256=sha,
        file_name=doc.get("file_name", name),
        template=doc.get("template"),
        valid=valid,
        errors=tuple(errors),
        data=doc.get("data", doc),
        claims=tuple(claims),
        credit_code=code,
        enterprise=ent["name"].strip(),
        year=year,
    )


def declaration_document(
    credit_code: str,
    enterprise: str,
    year: int,
    claims: Sequence[tuple[str, Mapping[str, object]]],
    *,
    answers: Mapping[str, object] | None = None,
    template: str | None = None,
    file_name: str | None = None,
    valid: bool = True,
    errors: Sequence[Mapping[str, str]] = (),
    data: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """A declaration in the JSON format (for tests, the demo generator, or a checker's output)."""
    doc: dict[str, Any] = {
        "format": JSON_FORMAT,
        "enterprise": {"credit_code": credit_code, "name": enterprise},
        "year": year,
        "claims": [{"clause": cid, "facts": dict(facts)} for cid, facts in claims],
    }
    if answers:
        doc["answers"] = dict(answers)
    if template is not None:
        doc["template"] = template
    if file_name is not None:
        doc["file_name"] = file_name
    if not valid or errors:
        doc["valid"] = valid
        doc["errors"] = [dict(e) for e in errors]
    if data is not None:
        doc["data"] = dict(data)
    return doc


def write_declaration(path: str | Path, doc: Mapping[str, Any]) -> Path:
    target = Path(path)
    target.write_text(json.dumps(doc, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    return target


_JSON_TYPES = {"object": "对象", "array": "列表", "string": "文本", "integer": "整数", "boolean": "true/false",
               "number": "数字", "null": "null"}


def _schema_problem(e: jsonschema.ValidationError) -> str:
    """A JSON Schema error in Chinese, naming the key."""
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.path).lstrip(".") or "文件顶层"
    if e.validator == "required":
        found = re.match(r"'(.+)' is a required property", e.message)
        return f"{where} 缺少“{found.group(1) if found else e.message}”"
    if e.validator == "const":
        return f"{where} 应为“{e.validator_value}”"
    if e.validator == "type":
        wanted = e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]
        return f"{where} 应为" + "或".join(_JSON_TYPES.get(t, t) for t in wanted)
    if e.validator == "additionalProperties":
        extra = sorted(set(e.instance) - set(e.schema.get("properties", {}))) if isinstance(e.instance, dict) else []
        return f"{where} 有未知的键：{'、'.join(map(str, extra))}"
    if e.validator == "minLength":
        return f"{where} 不能为空"
    return f"{where} 不符合格式（{e.validator}）"


def checked_workbook(path: Path) -> CheckedDeclaration:
    """A returned workbook, through the checker (imported here: calamine only when needed)."""
    from .intake import checked_declaration

    return checked_declaration(path)


# Which function turns a file of each type into a CheckedDeclaration. Workbooks go
# through the checker (lanxi_xl.intake); .xls is listed so that a legacy file is
# recorded with the reason it cannot be read instead of being skipped silently.
SOURCES: dict[str, Source] = {
    ".json": read_json_declaration,
    ".xlsx": checked_workbook,
    ".xlsm": checked_workbook,
    ".xls": checked_workbook,
}


def register_source(suffix: str, source: Source) -> None:
    SOURCES[suffix.lower()] = source


@dataclass(frozen=True)
class Folder:
    """The returned files of a folder (sorted, so arrival order is reproducible)."""

    root: Path
    files: tuple[Path, ...]
    skipped: list[tuple[str, str]]  # (relative name, why not read); grows if a file vanishes

    def declarations(self) -> Iterator[CheckedDeclaration]:
        # Read lazily: each file is read just before it is recorded.
        for path in self.files:
            rel = path.relative_to(self.root).as_posix()
            try:
                decl = SOURCES[path.suffix.lower()](path)
            except OSError as exc:  # removed or unreadable since the folder was scanned
                self.skipped.append((rel, f"无法读取：{exc.strerror or exc}"))
                continue
            except LanxiError as exc:  # a source that refuses a file: record it as invalid
                try:
                    sha = sha256_of(path)
                except OSError as err:
                    self.skipped.append((rel, f"无法读取：{err.strerror or err}"))
                    continue
                decl = _unreadable(path, rel, sha, exc.code, exc.message)
            if any(e.get("code") == "LEDGER_WORKBOOK" for e in decl.errors):
                self.skipped.append((rel, "本系统导出的奖励台账，不是申报"))
                continue
            if decl.file_name == path.name and rel != path.name:
                decl = replace(decl, file_name=rel)
            yield decl


def scan_folder(folder: str | Path, suffixes: Iterable[str] | None = None) -> Folder:
    """The files of ``folder`` (recursively, sorted) with a suffix in ``suffixes`` (default: SOURCES)."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError("FOLDER_NOT_FOUND", f"找不到申报文件夹 {root}", path=str(root))
    wanted = {s.lower() for s in suffixes} if suffixes is not None else set(SOURCES)
    files, skipped = [], []
    for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.name.startswith("~$"):  # Excel's lock file of an open workbook
            skipped.append((rel, "Excel 临时锁定文件"))
        elif path.suffix.lower() in wanted:
            files.append(path)
        else:
            supported = "、".join(sorted(wanted))
            skipped.append((rel, f"不支持的文件类型（支持：{supported}）"))
    return Folder(root, tuple(files), skipped)


# --- deciding one year ----------------------------------------------------------------------


def policy_version(policy: Policy) -> str:
    """Which policy data decided an award: the policy key and the hash of its file."""
    return f"{policy.key}@{_file_digest(policy.source)}"


@cache
def _file_digest(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    except OSError:
        return "unknown"


def lifetime_fact(clause: Clause) -> str | None:
    """The fact that carries "already received" for a lifetime-total clause (art. 9):
    the ``used`` of the ``remaining`` node whose total is ``payable.total``."""
    if clause.payable.kind != "lifetime_total":
        return None
    total = {"param": clause.payable.total}
    node = find_node(clause.award, lambda n: isinstance(n.get("remaining"), Mapping)
                     and n["remaining"].get("total") == total)
    used = node["remaining"].get("used", {}) if node else {}
    return used.get("fact") if isinstance(used, Mapping) else None


def yearly_cap_label(clause: Clause) -> str:
    """The name the policy data gives the yearly cap (the ``cap`` whose limit is it)."""
    limit = {"param": clause.payable.yearly_cap}
    node = find_node(clause.award, lambda n: isinstance(n.get("cap"), Mapping) and n["cap"].get("limit") == limit)
    return str(node["cap"].get("label", "")) if node else "每年上限"


@dataclass
class _Draft:
    """A decision while the year is being decided (mutable until frozen)."""

    claim: StoredClaim
    article: int
    computed: Decimal = ZERO
    amount: Decimal = ZERO
    paid: bool = False
    status: str = "error"
    outcome: str = "error"
    binding_cap: str | None = None
    reasons: list[str] = field(default_factory=list)
    trace: list[Mapping[str, Any]] = field(default_factory=list)
    award: Award | None = None
    choice: str | None = None

    def refuse(self, outcome: str, reason: str, cite: str = "台账") -> None:
        self.paid, self.amount, self.outcome = False, ZERO, outcome
        self.reasons.insert(0, reason)
        self.trace.append({"kind": "registry", "cite": cite, "text": reason, "quote": "", "ok": False})

    def note(self, text: str, cite: str = "台账") -> None:
        self.reasons.append(text)
        self.trace.append({"kind": "registry", "cite": cite, "text": text, "quote": "", "ok": None})


def _money(value: Decimal) -> str:
    return format_amount(value)


class _YearDecision:
    def __init__(self, policy: Policy, year: int, grants: Sequence[Grant]) -> None:
        self.policy = policy
        self.year = year
        self.earlier: dict[tuple[str, str], list[Grant]] = defaultdict(list)
        self.this_year: dict[tuple[str, str], list[Grant]] = defaultdict(list)
        for g in grants:
            if g.year <= year:  # a later year's award never counts against this one
                (self.earlier if g.year < year else self.this_year)[(g.credit_code, g.clause_id)].append(g)
        self.seen: dict[str, str] = {}
        self.dq_specs = disqualification_specs(policy)

    # art. 15 across the enterprise's declarations ------------------------------------

    def disqualifications(self, claims: Sequence[StoredClaim]) -> dict[str, tuple[dict[str, Any], str]]:
        """Per enterprise: the art. 15 answers that disqualify it this year, and the file."""
        found: dict[str, tuple[dict[str, Any], str]] = {}
        for c in claims:
            if not c.valid or c.credit_code in found:
                continue
            bad: dict[str, Any] = {}
            for key, raw in c.facts.items():
                if key not in self.dq_specs or is_blank(raw):
                    continue
                try:
                    value = coerce(self.dq_specs[key], raw)
                except InputError:
                    continue  # the engine reports it on that claim
                if disqualified(self.policy, {key: value}):
                    bad[key] = raw
            if bad:
                found[c.credit_code] = (bad, c.file_name)
        return found

    # one claim ------------------------------------------------------------------------

    def decide(self, c: StoredClaim, dq: Mapping[str, tuple[dict[str, Any], str]]) -> _Draft:
        clause = self.policy.clauses.get(c.clause_id)
        draft = _Draft(c, clause.article if clause else 0)
        if not c.valid:
            problems = "；".join(str(e.get("message", e.get("code", ""))) for e in c.errors[:3])
            more = f"等{len(c.errors)}处" if len(c.errors) > 3 else f"{len(c.errors)}处"
            draft.status = "invalid"
            draft.refuse("invalid", f"申报表未通过校验（{more}问题）：{problems}" if problems else "申报表未通过校验")
            return draft
        if clause is None:
            draft.refuse("error", f"政策{self.policy.id}中没有条款“{c.clause_id}”")
            return draft

        facts = dict(c.facts)
        if c.credit_code in dq:
            answers, source = dq[c.credit_code]
            own = {k: facts[k] for k in answers if k in facts}
            facts.update(answers)
            if source != c.file_name or own != answers:
                draft.note(f"本企业申报文件 {source} 申报了第{self.policy.disqualification_article}条不得享受情形，"
                           f"适用于本企业本年度的各项奖励", f"第{self.policy.disqualification_article}条")
        used_fact = lifetime_fact(clause)
        used = ZERO
        if used_fact:
            key = (c.credit_code, clause.id)
            prior = self.earlier[key] + self.this_year[key]
            used = sum((g.amount for g in prior), ZERO)
            declared = facts.get(used_fact)
            declared_value = None if is_blank(declared) else to_decimal(declared)
            if declared_value is not None and declared_value != used:
                draft.note(f"申报表填写「{clause.facts[used_fact].label}」{_money(declared_value)}，"
                           f"台账记录为{_money(used)}，按台账记录计算", clause.cite)
            facts[used_fact] = str(used)
        try:
            award = compute(clause.id, facts, self.year, policy=self.policy)
        except LanxiError as exc:
            draft.refuse("error", f"申报数据有误：{exc.message}")
            return draft
        draft.award = award
        draft.status = str(award.status)
        draft.computed = award.amount
        draft.trace = [*award.to_dict()["trace"], *draft.trace]
        draft.binding_cap = award.binding_cap
        if clause.payable.kind == "once_per_choice" and clause.payable.fact:
            draft.choice = award.facts.get(clause.payable.fact)

        if c.fingerprint in self.seen:
            draft.refuse("duplicate", f"与申报文件 {self.seen[c.fingerprint]} 的申报内容相同（同一企业、年度、条款和数据），"
                                      "视为同一申报，不重复计算")
            return draft
        self.seen[c.fingerprint] = c.file_name

        if award.status is not Status.PAYABLE:
            outcome = str(award.status)
            text = "；".join(award.reasons) or STATUS_ZH[award.status]
            if used_fact and award.status is Status.NIL:
                total = clause.params[clause.payable.total].value  # type: ignore[index]
                if used >= total:  # type: ignore[operator]
                    outcome = "lifetime_total"
                    text = (f"{clause.cite}单个企业扶持总额不超过{_money(total)}（{clause.params[clause.payable.total].quote}），"  # type: ignore[index,arg-type]
                            f"台账记录已获{_money(used)}，额度已用完")
            draft.binding_cap = None if outcome != "lifetime_total" else award.binding_cap
            draft.refuse(outcome, text, clause.cite)
            return draft

        draft.amount = award.amount
        if not self.frequency(draft, clause):
            return draft
        self.yearly_cap(draft, clause)
        if draft.paid:
            self.this_year[(c.credit_code, clause.id)].append(
                Grant(c.credit_code, clause.id, self.year, draft.choice, draft.amount, f"申报文件 {c.file_name}")
            )
        if used_fact and award.binding_cap and draft.outcome == "paid":
            total = clause.params[clause.payable.total].value  # type: ignore[index]
            draft.note(f"按{award.binding_cap}核定：总额{_money(total)}（{clause.params[clause.payable.total].quote}），"  # type: ignore[index,arg-type]
                       f"台账记录已获{_money(used)}", clause.cite)
        return draft

    def frequency(self, draft: _Draft, clause: Clause) -> bool:
        """``payable`` against earlier years and earlier claims of this year; False if refused."""
        c, pay = draft.claim, clause.payable
        key = (c.credit_code, clause.id)
        earlier, this_year = self.earlier[key], self.this_year[key]
        if pay.kind in ("once", "once_per_choice"):
            same = [g for g in earlier + this_year if pay.kind == "once" or g.choice == draft.choice]
            if same:
                g = same[0]
                what = f"{clause.cite}为一次性奖励，"
                if pay.kind == "once_per_choice":
                    spec = clause.facts[pay.fact]  # type: ignore[index]
                    label = next((ch.label for ch in spec.choices if ch.key == draft.choice), draft.choice)
                    what = f"{clause.cite}每一{spec.label}各奖励一次，「{label}」"
                draft.refuse("once_paid" if g.year < self.year else "duplicate",
                             f"{what}已于{g.year}年发放{_money(g.amount)}（{g.source}），不再重复发放", clause.cite)
                return False
        if pay.kind == "consecutive_years" and pay.years:
            paid_years = sorted({g.year for g in earlier if g.amount > 0})
            first = paid_years[0] if paid_years else self.year
            last = first + pay.years - 1
            if self.year > last:
                draft.refuse("window_over", f"{clause.cite}最多连续补助{pay.years}年：本企业自{first}年起享受，"
                                            f"补助期为{first}—{last}年，{self.year}年已超出补助期", clause.cite)
                return False
            draft.note(f"连续补助{pay.years}年：补助期{first}—{last}年，本年为第{self.year - first + 1}年", clause.cite)
        if pay.kind in ("per_year", "consecutive_years") and not pay.yearly_cap and this_year:
            g = this_year[0]
            draft.refuse("duplicate", f"{clause.cite}每年奖励一次，本年度已核定{_money(g.amount)}（{g.source}），"
                                      "不重复发放", clause.cite)
            return False
        draft.paid, draft.outcome = True, "paid"
        return True

    def yearly_cap(self, draft: _Draft, clause: Clause) -> None:
        name = clause.payable.yearly_cap
        if not name:
            return
        param = clause.params[name]
        cap: Decimal = param.value  # type: ignore[assignment]
        before = self.this_year[(draft.claim.credit_code, clause.id)]
        granted = sum((g.amount for g in before), ZERO)
        if not before:
            return
        left = max(cap - granted, ZERO)
        label = yearly_cap_label(clause)
        sources = "、".join(g.source for g in before)
        if left == 0:
            draft.binding_cap = f"{label}（本年度累计）"
            draft.refuse("yearly_cap", f"{label}{_money(cap)}（{param.quote}）：本年度已核定{_money(granted)}"
                                       f"（{sources}），额度已用完", clause.cite)
        elif draft.amount > left:
            draft.binding_cap = f"{label}（本年度累计）"
            draft.outcome = "reduced"
            draft.note(f"{label}{_money(cap)}（{param.quote}）：本年度已核定{_money(granted)}（{sources}），"
                       f"本项计算{_money(draft.amount)}，核减为{_money(left)}", clause.cite)
            draft.amount = left
        else:
            draft.note(f"本年度本条款已核定{_money(granted)}（{sources}），加本项未超过{label}{_money(cap)}", clause.cite)

    # art. 14 ---------------------------------------------------------------------------

    def overlap(self, drafts: Sequence[_Draft]) -> None:
        order = {id(d): n for n, d in enumerate(drafts)}
        by_enterprise: dict[str, list[_Draft]] = defaultdict(list)
        for d in drafts:
            if d.paid and d.award is not None:
                by_enterprise[d.claim.credit_code].append(d)
        cite = f"第{self.policy.overlap_article}条"
        for group in self.policy.overlap_groups:
            for paid in by_enterprise.values():
                members = [d for d in paid if d.claim.clause_id in group.clauses]
                if len(members) < 2:
                    continue
                # Ties go to the first listed: the group's order in the data, then arrival.
                members.sort(key=lambda d: (group.clauses.index(d.claim.clause_id), order[id(d)]))
                candidates = [replace(d.award, amount=d.amount) for d in members]  # type: ignore[arg-type]
                result = highest_of(candidates, matter=group.label, article=self.policy.overlap_article)
                by_award = {id(a): d for a, d in zip(candidates, members)}
                for unpaid in result.unpaid:
                    d = by_award[id(unpaid.award)]
                    d.binding_cap = None
                    d.refuse("overlap", unpaid.reason, cite)
                if result.paid is not None:
                    winner = by_award[id(result.paid)]
                    others = "、".join(self.policy.clauses[d.claim.clause_id].cite for d in members if d is not winner)
                    winner.note(f"{group.label}同时申报{others}，按“就高不重复”原则发放本项（最高）", cite)

    def freeze(self, d: _Draft) -> Decision:
        reason = "；".join(d.reasons) if d.reasons else ""
        if d.paid:
            head = "予以发放" if d.outcome == "paid" else "予以发放（按每年上限核减）"
            if d.binding_cap and d.outcome == "paid":
                head += f"（起作用的上限：{d.binding_cap}）"
            reason = head + (f"；{reason}" if reason else "")
        return Decision(
            claim_id=d.claim.claim_id,
            credit_code=d.claim.credit_code,
            year=self.year,
            article=d.article,
            clause_id=d.claim.clause_id,
            choice=d.choice,
            computed=d.computed,
            amount=d.amount if d.paid else ZERO,
            paid=d.paid and d.amount > 0,
            status=d.status,
            outcome=d.outcome,
            binding_cap=d.binding_cap,
            reason=reason,
            trace=tuple(d.trace),
            policy_id=self.policy.id,
            policy_version=policy_version(self.policy),
        )


def decide_year(policy: Policy, year: int, claims: Sequence[StoredClaim], grants: Sequence[Grant]) -> tuple[Decision, ...]:
    """Every claim of ``year`` decided, given what was granted before (pure: no database)."""
    state = _YearDecision(policy, year, grants)
    dq = state.disqualifications(claims)
    drafts = [state.decide(c, dq) for c in claims]
    state.overlap(drafts)
    return tuple(state.freeze(d) for d in drafts)


def redecide(reg: Registry, db: Any, from_year: int) -> tuple[tuple[int, ...], int]:
    """Decide ``from_year`` and every later year already decided (inside a transaction).
    Returns the years decided and how many stored rows changed."""
    years = [from_year] + [y for y in reg.decided_years() if y > from_year]
    changed = 0
    for y in years:
        policy = policy_for_year(y)
        decisions = decide_year(policy, y, reg.claims(y), reg.grants_before(y))
        changed += reg.write_decisions(db, y, decisions)
    return tuple(years), changed


# --- a whole review ----------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewResult:
    year: int
    db_path: str
    seen: int  # declarations read
    recorded: int  # new ones recorded now
    already: int  # recorded before (same file hash)
    invalid: tuple[str, ...]  # files read now that failed their check
    other_years: tuple[tuple[str, int | None], ...]  # files of another year: recorded, not decided now
    skipped: tuple[tuple[str, str], ...]  # files not read and why
    resumed: tuple[Mapping[str, Any], ...]  # earlier reviews of the year that never finished
    years_decided: tuple[int, ...]
    changed: int  # stored decision rows that changed
    candidates: int
    paid: int
    total: Decimal


def _pause_for_tests(recorded: int) -> None:
    limit = os.environ.get(PAUSE_ENV)
    if limit and limit.isdigit() and recorded == int(limit):
        print(PAUSE_MARK, file=sys.stderr, flush=True)
        time.sleep(float(os.environ.get("LANXI_XL_PAUSE_SECONDS", "600")))


def review(
    db_path: str | Path | None,
    declarations: Iterable[CheckedDeclaration],
    year: object,
    *,
    source: str = "",
    skipped: Sequence[tuple[str, str]] = (),  # read again at the end: a source may add to it
    progress: Callable[[CheckedDeclaration, bool], None] | None = None,
) -> ReviewResult:
    """Record ``declarations`` (each in its own transaction), then decide ``year``."""
    y = parse_year(year)
    policy_for_year(y)  # refuse a year no policy covers before recording anything
    seen = recorded = 0
    invalid: list[str] = []
    other: list[tuple[str, int | None]] = []
    with open_registry(db_path) as reg:
        review_id, unfinished = reg.start_review(y, source)
        for decl in declarations:
            seen += 1
            new = reg.record(decl, y, review_id=review_id)
            if progress:
                progress(decl, new)
            if not decl.valid:
                invalid.append(decl.file_name)
            years = {c.year for c in decl.claims} or ({decl.year} if decl.year is not None else set())
            if years and y not in years:
                other.append((decl.file_name, min(years)))
            if new:
                recorded += 1
                _pause_for_tests(recorded)
        with reg.transaction() as db:
            decided, changed = redecide(reg, db, y)
            reg.finish_review(db, review_id)
        rows = reg.decisions(y)
    paid = [r for r in rows if r.decision.paid]
    return ReviewResult(
        year=y,
        db_path=str(reg.path),
        seen=seen,
        recorded=recorded,
        already=seen - recorded,
        invalid=tuple(invalid),
        other_years=tuple(other),
        skipped=tuple(skipped),
        resumed=tuple(unfinished),
        years_decided=decided,
        changed=changed,
        candidates=len(rows),
        paid=len(paid),
        total=sum((r.decision.amount for r in paid), ZERO),
    )


def format_review(result: ReviewResult) -> str:
    """What the review command prints (Chinese)."""
    lines = []
    for run in result.resumed:
        lines.append(f"注意：{run['started_at']} 开始的{result.year}年度审核未完成（已登记{run['recorded']}份后中断），本次已补全。")
    lines.append(
        f"审核{result.year}年度：读取申报文件{result.seen}份，新登记{result.recorded}份，"
        f"此前已登记{result.already}份（按文件哈希跳过）"
    )
    if result.invalid:
        lines.append(f"未通过校验{len(result.invalid)}份：" + "、".join(result.invalid))
    for name, y in result.other_years:
        lines.append(f"注意：{name} 申报的是{y}年度，已登记，未在本次核定（请用 --year {y} 审核）")
    for name, why in result.skipped:
        lines.append(f"未读取：{name}（{why}）")
    later = [y for y in result.years_decided if y != result.year]
    if later:
        lines.append("已一并重新核定以后年度：" + "、".join(map(str, later)) + "（请重新导出这些年度的台账）")
    lines.append(
        f"核定{result.candidates}项，发放{result.paid}项，合计{format_amount(result.total)}"
        f"（本次变更{result.changed}项）；台账数据库：{result.db_path}"
    )
    return "\n".join(lines)


def review_folder(folder: str | Path, year: object, db_path: str | Path | None = None,
                  progress: Callable[[CheckedDeclaration, bool], None] | None = None) -> ReviewResult:
    found = scan_folder(folder)
    return review(db_path, found.declarations(), year, source=str(found.root), skipped=found.skipped,
                  progress=progress)


# --- what the ledger shows ------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerRow:
    year: int
    credit_code: str
    enterprise: str
    article: int
    cite: str
    clause_id: str
    title: str
    file_name: str
    declared: str  # the declared figures, in words
    computed: Decimal
    amount: Decimal
    binding_cap: str
    paid: bool
    outcome: str  # in Chinese
    reason: str
    policy_id: str


@dataclass(frozen=True)
class EnterpriseTotal:
    credit_code: str
    enterprise: str
    candidates: int
    paid: int
    amount: Decimal


@dataclass(frozen=True)
class ArticleTotal:
    article: int
    cite: str
    title: str
    candidates: int
    paid: int
    amount: Decimal


@dataclass(frozen=True)
class LedgerData:
    year: int
    policy_id: str
    policy_title: str
    rows: tuple[LedgerRow, ...]
    declarations: tuple[DeclarationInfo, ...]
    enterprises: tuple[EnterpriseTotal, ...]
    articles: tuple[ArticleTotal, ...]

    @property
    def total(self) -> Decimal:
        return sum((r.amount for r in self.rows if r.paid), ZERO)


def describe_facts(policy: Policy, clause: Clause | None, facts: Mapping[str, Any]) -> str:
    """The declared figures in words: 「线上销售额」3,000,000.00元；… (raw text if unreadable)."""
    if clause is None:
        return "；".join(f"{k}={v}" for k, v in facts.items())
    specs = {**clause.facts, **disqualification_specs(policy)}  # in the order of the policy data
    parts = []
    for name, spec in specs.items():
        raw = facts.get(name)
        if not is_blank(raw):
            parts.append(f"「{spec.label}」{_describe_value(spec, raw)}")
    for name, raw in facts.items():
        if name not in specs and not is_blank(raw):
            parts.append(f"{name}：“{raw}”")
    return "；".join(parts)


def _describe_value(spec: FactSpec, raw: Any) -> str:
    try:
        value = coerce(spec, raw)
    except InputError:
        return f"“{raw}”"
    if spec.type == "bool":
        return "是" if value else "否"
    if spec.type == "choice":
        return next((c.label for c in spec.choices if c.key == value), str(value))
    if spec.type == "items":
        first = next(iter(spec.items))
        shown = []
        for row in value:
            text = fmt_fact(spec.items[first], row[first])
            # Only a "no" is worth showing (e.g. an event not filed in advance).
            flags = [f"{s.label}：否" for k, s in spec.items.items() if s.type == "bool" and not row[k]]
            shown.append(text + (f"（{'，'.join(flags)}）" if flags else ""))
        return f"{len(value)}项：" + "；".join(shown)
    return fmt_fact(spec, value)


def ledger_data(reg: Registry, year: object) -> LedgerData:
    y = parse_year(year)
    policy = policy_for_year(y)
    rows = []
    for stored in reg.decisions(y):
        d, c = stored.decision, stored.claim
        clause = policy.clauses.get(d.clause_id)
        rows.append(
            LedgerRow(
                year=y,
                credit_code=d.credit_code,
                enterprise=c.enterprise,
                article=d.article,
                cite=clause.cite if clause else d.clause_id,
                clause_id=d.clause_id,
                title=clause.title if clause else "",
                file_name=c.file_name,
                declared=describe_facts(policy, clause, c.facts),
                computed=d.computed,
                amount=d.amount,
                binding_cap=d.binding_cap or "",
                paid=d.paid,
                outcome=OUTCOME_ZH.get(d.outcome, d.outcome),
                reason=d.reason,
                policy_id=d.policy_id,
            )
        )
    names: dict[str, str] = {}
    per_ent: dict[str, list[LedgerRow]] = defaultdict(list)
    for r in rows:
        names.setdefault(r.credit_code, r.enterprise)
        per_ent[r.credit_code].append(r)
    enterprises = tuple(
        EnterpriseTotal(code, names[code], len(rs), sum(r.paid for r in rs),
                        sum((r.amount for r in rs if r.paid), ZERO))
        for code, rs in per_ent.items()
    )
    articles = []
    for article in sorted({c.article for c in policy.clauses.values()}):
        clauses = [c for c in policy.clauses.values() if c.article == article]
        rs = [r for r in rows if r.article == article]
        articles.append(
            ArticleTotal(article, f"第{article}条", "、".join(dict.fromkeys(c.title for c in clauses)), len(rs),
                         sum(r.paid for r in rs), sum((r.amount for r in rs if r.paid), ZERO))
        )
    return LedgerData(
        year=y,
        policy_id=policy.id,
        policy_title=policy.title,
        rows=tuple(rows),
        declarations=tuple(reg.declarations(y)),
        enterprises=enterprises,
        articles=tuple(articles),
    )


def stored_decisions(db_path: str | Path | None, year: object) -> list[StoredDecision]:
    with open_registry(db_path) as reg:
        return reg.decisions(parse_year(year))
