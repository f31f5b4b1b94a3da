"""The registry: what was declared, decided and paid, kept across years (SQLite by default).

This module is the only one that speaks SQL. It stores enterprises (by 统一社会信用代码),
declarations (file hash, template, extracted data, check result), the clauses each
declaration claims, the award decided for each claim, and awards paid before the system
(history). The review rules that read and write it live in :mod:`lanxi_xl.review`.

Kept portable on purpose, so a server database can replace SQLite later: plain
standard SQL (``INSERT … ON CONFLICT DO NOTHING`` is shared by SQLite and PostgreSQL),
money as integer fen (never REAL), times as ISO-8601 text, versioned migrations in a
``schema_version`` table rather than SQLite's ``PRAGMA user_version``. The SQLite-only
parts are confined to :func:`open_registry` (WAL, foreign keys, ``BEGIN IMMEDIATE``).

Every write is one short transaction: recording a declaration is atomic, deciding a year
is atomic. A process killed at any point leaves either the old or the new state, and
the next review completes what is missing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from . import credit_code
from .errors import LanxiError
from .money import FEN, round_money


class RegistryError(LanxiError):
    """The registry file cannot be opened, is from a newer version, or is busy."""


# --- values going in and out ---------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """One clause claimed in one checked declaration."""

    credit_code: str  # 统一社会信用代码
    enterprise: str
    year: int
    clause_id: str  # "1", "2", "3", "4.1", … "11.2", "12", "13"
    facts: Mapping[str, object]  # the clause's facts plus the art. 15 answers


@dataclass(frozen=True)
class CheckedDeclaration:
    """One returned file after checking: what the registry records about it."""

    sha256: str
    file_name: str
    template: str | None
    valid: bool
    errors: tuple[Mapping[str, str], ...]  # each: code, message, and where (cell, field, …)
    data: Mapping[str, object]  # the extracted instance, stored as JSON
    claims: tuple[Claim, ...]
    # Who and which year, when known even for a file whose claims could not be read.
    credit_code: str | None = None
    enterprise: str | None = None
    year: int | None = None


@dataclass(frozen=True)
class StoredClaim:
    """A claim as recorded, with the declaration it came from."""

    claim_id: int
    declaration_id: int
    seq: int
    file_name: str
    valid: bool
    errors: tuple[Mapping[str, str], ...]
    credit_code: str
    enterprise: str
    year: int
    clause_id: str
    facts: Mapping[str, Any]
    fingerprint: str


@dataclass(frozen=True)
class Grant:
    """An award already granted, which the once / consecutive / lifetime / yearly rules count."""

    credit_code: str
    clause_id: str
    year: int
    choice: str | None
    amount: Decimal
    source: str  # where it comes from, in Chinese: 申报文件 x.json / 历史记录 y.xlsx 第3行


@dataclass(frozen=True)
class Decision:
    """The award decided for one claim, with the reason whether paid or not."""

    claim_id: int
    credit_code: str
    year: int
    article: int
    clause_id: str
    choice: str | None
    computed: Decimal  # what the engine gives for this declaration alone
    amount: Decimal  # what is granted after the rules spanning declarations and years
    paid: bool
    status: str  # engine status (payable, nil, below_threshold, not_applicable) or invalid / error
    outcome: str  # stable code of the decision, see review.OUTCOME_ZH
    binding_cap: str | None
    reason: str
    trace: tuple[Mapping[str, Any], ...] = field(compare=False)
    policy_id: str = ""
    policy_version: str = ""


@dataclass(frozen=True)
class HistoryRow:
    """One award paid before the system, from the bureau's own records."""

    credit_code: str
    enterprise: str
    year: int
    clause_id: str
    choice: str | None
    amount: Decimal
    note: str
    source_row: int


@dataclass(frozen=True)
class DeclarationInfo:
    declaration_id: int
    sha256: str
    file_name: str
    template: str | None
    credit_code: str | None
    enterprise: str | None
    year: int | None
    valid: bool
    errors: tuple[Mapping[str, str], ...]
    recorded_at: str


@dataclass(frozen=True)
class StoredDecision:
    decision: Decision
    claim: StoredClaim


# --- schema ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


# Append-only: a released migration is never edited, a change is a new version.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "enterprises, declarations, claims, awards, history, reviews",
        (
            """CREATE TABLE enterprises (
                credit_code VARCHAR(18) PRIMARY KEY,
                name TEXT NOT NULL,
                first_seen TEXT NOT NULL,
                last_seen TEXT NOT NULL
            )""",
            # id is the order of arrival: "a later declaration" in the yearly-cap rule.
            """CREATE TABLE declarations (
                id INTEGER PRIMARY KEY,
                sha256 CHAR(64) NOT NULL UNIQUE,
                file_name TEXT NOT NULL,
                template TEXT,
                credit_code VARCHAR(18) REFERENCES enterprises (credit_code),
                enterprise_name TEXT,
                year INTEGER,
                review_year INTEGER NOT NULL,
                valid SMALLINT NOT NULL CHECK (valid IN (0, 1)),
                errors_json TEXT NOT NULL,
                data_json TEXT NOT NULL,
                recorded_at TEXT NOT NULL
            )""",
            """CREATE TABLE claims (
                id INTEGER PRIMARY KEY,
                declaration_id INTEGER NOT NULL REFERENCES declarations (id),
                seq INTEGER NOT NULL,
                credit_code VARCHAR(18) NOT NULL REFERENCES enterprises (credit_code),
                enterprise_name TEXT NOT NULL,
                year INTEGER NOT NULL,
                clause_id VARCHAR(8) NOT NULL,
                facts_json TEXT NOT NULL,
                fingerprint CHAR(64) NOT NULL,
                UNIQUE (declaration_id, seq)
            )""",
            "CREATE INDEX claims_by_year ON claims (year, credit_code, clause_id)",
            """CREATE TABLE awards (
                id INTEGER PRIMARY KEY,
                claim_id INTEGER NOT NULL UNIQUE REFERENCES claims (id),
                credit_code VARCHAR(18) NOT NULL REFERENCES enterprises (credit_code),
                year INTEGER NOT NULL,
                article INTEGER NOT NULL,
                clause_id VARCHAR(8) NOT NULL,
                choice TEXT,
                computed_fen BIGINT NOT NULL CHECK (computed_fen >= 0),
                amount_fen BIGINT NOT NULL CHECK (amount_fen >= 0),
                paid SMALLINT NOT NULL CHECK (paid IN (0, 1)),
                status TEXT NOT NULL,
                outcome TEXT NOT NULL,
                binding_cap TEXT,
                reason TEXT NOT NULL,
                trace_json TEXT NOT NULL,
                policy_id TEXT NOT NULL,
                policy_version TEXT NOT NULL,
                decided_at TEXT NOT NULL,
                CHECK (paid = 1 OR amount_fen = 0)
            )""",
            "CREATE INDEX awards_by_enterprise ON awards (credit_code, clause_id, year)",
            """CREATE TABLE history_imports (
                id INTEGER PRIMARY KEY,
                sha256 CHAR(64) NOT NULL UNIQUE,
                file_name TEXT NOT NULL,
                rows_read INTEGER NOT NULL,
                rows_added INTEGER NOT NULL,
                imported_at TEXT NOT NULL
            )""",
            """CREATE TABLE history (
                id INTEGER PRIMARY KEY,
                import_id INTEGER NOT NULL REFERENCES history_imports (id),
                source_row INTEGER NOT NULL,
                credit_code VARCHAR(18) NOT NULL REFERENCES enterprises (credit_code),
                enterprise_name TEXT NOT NULL,
                year INTEGER NOT NULL,
                clause_id VARCHAR(8) NOT NULL,
                choice TEXT NOT NULL DEFAULT '',
                amount_fen BIGINT NOT NULL CHECK (amount_fen > 0),
                note TEXT NOT NULL,
                UNIQUE (credit_code, year, clause_id, choice, amount_fen)
            )""",
            # A review that has started but not finished is how a killed run is noticed.
            """CREATE TABLE reviews (
                id INTEGER PRIMARY KEY,
                year INTEGER NOT NULL,
                source TEXT NOT NULL,
                started_at TEXT NOT NULL,
                finished_at TEXT,
                recorded INTEGER NOT NULL DEFAULT 0
            )""",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version

DEFAULT_DB = "lanxi-registry.sqlite"
DB_ENV = "LANXI_XL_DB"
BUSY_TIMEOUT_MS = 30 * 1000  # how long a second review waits for the first


# --- helpers -------------------------------------------------------------------------------


def default_db_path() -> str:
    """Where the registry lives unless --db says otherwise: $LANXI_XL_DB, else the current folder."""
    return os.environ.get(DB_ENV) or DEFAULT_DB


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def to_fen(amount: Decimal) -> int:
    return int(round_money(amount) / FEN)


def from_fen(fen: int) -> Decimal:
    return (Decimal(fen) * FEN).quantize(FEN)


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(value: object) -> str:
    """Canonical JSON: the same data always gives the same text (keys sorted)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=_json_default, separators=(",", ":"))


def from_json(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def fingerprint(claim: Claim) -> str:
    """What a claim says, independent of the file it came in: a re-saved copy of the
    same declaration has a new file hash but the same fingerprint."""
    body = to_json([claim.credit_code, claim.year, claim.clause_id, claim.facts])
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def credit_code_check_char(first17: str) -> str | None:
    return credit_code.check_char(first17)


def normalize_credit_code(raw: object) -> str:
    return credit_code.normalize(raw)


# --- the registry ------------------------------------------------------------------------


class Registry:
    """An open registry. Use :func:`open_registry`; every write goes through ``transaction``."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    # transactions ------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work; the write lock is taken at the start (BEGIN IMMEDIATE),
        so two reviews on the same file wait for each other instead of deadlocking."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _busy(self.path, exc) from None
        try:
            yield self.conn
        except sqlite3.Error as exc:
            self.conn.execute("ROLLBACK")
            raise _busy(self.path, exc) from None
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _busy(self.path, exc) from None

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    # schema --------------------------------------------------------------------------

    def migrate(self) -> None:
        with self.transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            current = db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
            if current > SCHEMA_VERSION:
                raise RegistryError(
                    "REGISTRY_TOO_NEW",
                    f"台账数据库 {self.path} 的结构版本为{current}，本程序只支持到{SCHEMA_VERSION}，请升级 lanxi-xl",
                    path=str(self.path),
                )
            for m in MIGRATIONS:
                if m.version <= current:
                    continue
                for statement in m.statements:
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                    (m.version, m.description, now()),
                )

    def schema_version(self) -> int:
        return int(self._query("SELECT MAX(version) FROM schema_version")[0][0] or 0)

    # declarations ------------------------------------------------------------------

    def has_declaration(self, sha256: str) -> bool:
        return bool(self._query("SELECT 1 FROM declarations WHERE sha256 = ?", (sha256,)))

    def record(self, decl: CheckedDeclaration, review_year: int, review_id: int | None = None) -> bool:
        """Record one checked declaration and its claims; False if this file was recorded before.

        ``review_year`` is the year under review when it arrived: a file too broken to say
        its own year is still listed in that year's ledger."""
        stamp = now()
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM declarations WHERE sha256 = ?", (decl.sha256,)).fetchone():
                return False
            if decl.credit_code:
                self._touch_enterprise(db, decl.credit_code, decl.enterprise or "", stamp)
            for claim in decl.claims:
                self._touch_enterprise(db, claim.credit_code, claim.enterprise, stamp)
            cur = db.execute(
                "INSERT INTO declarations (sha256, file_name, template, credit_code, enterprise_name, year, review_year,"
                " valid, errors_json, data_json, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    decl.sha256,
                    decl.file_name,
                    decl.template,
                    decl.credit_code,
                    decl.enterprise,
                    decl.year,
                    review_year,
                    int(decl.valid),
                    to_json(list(decl.errors)),
                    to_json(decl.data),
                    stamp,
                ),
            )
            decl_id = cur.lastrowid
            for seq, claim in enumerate(decl.claims, start=1):
                db.execute(
                    "INSERT INTO claims (declaration_id, seq, credit_code, enterprise_name, year, clause_id,"
                    " facts_json, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        decl_id,
                        seq,
                        claim.credit_code,
                        claim.enterprise,
                        claim.year,
                        claim.clause_id,
                        to_json(claim.facts),
                        fingerprint(claim),
                    ),
                )
            if review_id is not None:
                db.execute("UPDATE reviews SET recorded = recorded + 1 WHERE id = ?", (review_id,))
        return True

    @staticmethod
    def _touch_enterprise(db: sqlite3.Connection, code: str, name: str, stamp: str) -> None:
        db.execute(
            "INSERT INTO enterprises (credit_code, name, first_seen, last_seen) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (credit_code) DO NOTHING",
            (code, name, stamp, stamp),
        )
        if name:
            db.execute("UPDATE enterprises SET name = ?, last_seen = ? WHERE credit_code = ?", (name, stamp, code))

    def declarations(self, year: int | None = None) -> list[DeclarationInfo]:
        """Recorded declarations in arrival order: of ``year``, or all of them."""
        sql = "SELECT * FROM declarations"
        params: tuple[object, ...] = ()
        if year is not None:
            sql += (" WHERE year = ? OR (year IS NULL AND review_year = ?)"
                    " OR id IN (SELECT declaration_id FROM claims WHERE year = ?)")
            params = (year, year, year)
        return [
            DeclarationInfo(
                declaration_id=r["id"],
                sha256=r["sha256"],
                file_name=r["file_name"],
                template=r["template"],
                credit_code=r["credit_code"],
                enterprise=r["enterprise_name"],
                year=r["year"],
                valid=bool(r["valid"]),
                errors=tuple(from_json(r["errors_json"])),
                recorded_at=r["recorded_at"],
            )
            for r in self._query(sql + " ORDER BY id", params)
        ]

    def claims(self, year: int) -> list[StoredClaim]:
        """The year's claims in arrival order (declaration, then place in the declaration)."""
        rows = self._query(
            "SELECT c.*, d.file_name, d.valid, d.errors_json FROM claims c JOIN declarations d"
            " ON d.id = c.declaration_id WHERE c.year = ? ORDER BY c.declaration_id, c.seq",
            (year,),
        )
        return [_stored_claim(r) for r in rows]

    def claim_years(self) -> list[int]:
        return [r[0] for r in self._query("SELECT DISTINCT year FROM claims ORDER BY year")]

    # awards ------------------------------------------------------------------------

    def grants_before(self, year: int) -> list[Grant]:
        """What the rules spanning years count when deciding ``year``: awards the system
        paid in earlier years, and history up to and including ``year`` (history of the
        year itself was paid outside the system and is counted as granted first)."""
        grants = [
            Grant(r["credit_code"], r["clause_id"], r["year"], r["choice"], from_fen(r["amount_fen"]),
                  f"申报文件 {r['file_name']}")
            for r in self._query(
                "SELECT a.credit_code, a.clause_id, a.year, a.choice, a.amount_fen, d.file_name FROM awards a"
                " JOIN claims c ON c.id = a.claim_id JOIN declarations d ON d.id = c.declaration_id"
                " WHERE a.paid = 1 AND a.year < ? ORDER BY a.year, c.declaration_id, c.seq",
                (year,),
            )
        ]
        grants += [
            Grant(r["credit_code"], r["clause_id"], r["year"], r["choice"] or None, from_fen(r["amount_fen"]),
                  f"历史记录 {r['file_name']} 第{r['source_row']}行")
            for r in self._query(
                "SELECT h.*, i.file_name FROM history h JOIN history_imports i ON i.id = h.import_id"
                " WHERE h.year <= ? ORDER BY h.year, h.id",
                (year,),
            )
        ]
        return sorted(grants, key=lambda g: g.year)

    def decided_years(self) -> list[int]:
        return [r[0] for r in self._query("SELECT DISTINCT year FROM awards ORDER BY year")]

    def write_decisions(self, db: sqlite3.Connection, year: int, decisions: Sequence[Decision]) -> int:
        """Make the year's stored decisions equal ``decisions``; returns how many rows changed.

        Call inside a transaction. An unchanged decision keeps its row and its time, so
        re-reviewing changes nothing that did not change.
        """
        existing = {
            r["claim_id"]: r
            for r in db.execute("SELECT * FROM awards WHERE year = ?", (year,)).fetchall()
        }
        changed = 0
        stamp = now()
        wanted = set()
        for d in decisions:
            wanted.add(d.claim_id)
            values = (
                d.credit_code,
                d.year,
                d.article,
                d.clause_id,
                d.choice,
                to_fen(d.computed),
                to_fen(d.amount),
                int(d.paid),
                d.status,
                d.outcome,
                d.binding_cap,
                d.reason,
                to_json(list(d.trace)),
                d.policy_id,
                d.policy_version,
            )
            old = existing.get(d.claim_id)
            if old is not None and tuple(old[k] for k in _AWARD_COLUMNS) == values:
                continue
            changed += 1
            if old is None:
                db.execute(
                    f"INSERT INTO awards (claim_id, {', '.join(_AWARD_COLUMNS)}, decided_at)"
                    f" VALUES ({', '.join('?' * (len(_AWARD_COLUMNS) + 2))})",
                    (d.claim_id, *values, stamp),
                )
            else:
                db.execute(
                    f"UPDATE awards SET {', '.join(f'{k} = ?' for k in _AWARD_COLUMNS)}, decided_at = ?"
                    " WHERE claim_id = ?",
                    (*values, stamp, d.claim_id),
                )
        for claim_id in set(existing) - wanted:
            db.execute("DELETE FROM awards WHERE claim_id = ?", (claim_id,))
            changed += 1
        return changed

    def decisions(self, year: int) -> list[StoredDecision]:
        """The year's decisions with their claims, in arrival order."""
        rows = self._query(
            "SELECT a.*, c.declaration_id, c.seq, c.enterprise_name, c.facts_json, c.fingerprint,"
            " d.file_name, d.valid, d.errors_json FROM awards a JOIN claims c ON c.id = a.claim_id"
            " JOIN declarations d ON d.id = c.declaration_id WHERE a.year = ? ORDER BY c.declaration_id, c.seq",
            (year,),
        )
        out = []
        for r in rows:
            decision = Decision(
                claim_id=r["claim_id"],
                credit_code=r["credit_code"],
                year=r["year"],
                article=r["article"],
                clause_id=r["clause_id"],
                choice=r["choice"],
                computed=from_fen(r["computed_fen"]),
                amount=from_fen(r["amount_fen"]),
                paid=bool(r["paid"]),
                status=r["status"],
                outcome=r["outcome"],
                binding_cap=r["binding_cap"],
                reason=r["reason"],
                trace=tuple(from_json(r["trace_json"])),
                policy_id=r["policy_id"],
                policy_version=r["policy_version"],
            )
            out.append(StoredDecision(decision, _stored_claim(r)))
        return out

    # history -----------------------------------------------------------------------

    def history_import(self, sha256: str) -> Mapping[str, Any] | None:
        rows = self._query("SELECT * FROM history_imports WHERE sha256 = ?", (sha256,))
        return dict(rows[0]) if rows else None

    def add_history(self, db: sqlite3.Connection, sha256: str, file_name: str, rows: Sequence[HistoryRow]) -> int:
        """Store one imported file's rows (inside a transaction); rows already stored from
        another file (same enterprise, year, clause, title and amount) are skipped."""
        stamp = now()
        cur = db.execute(
            "INSERT INTO history_imports (sha256, file_name, rows_read, rows_added, imported_at)"
            " VALUES (?, ?, ?, 0, ?)",
            (sha256, file_name, len(rows), stamp),
        )
        import_id = cur.lastrowid
        added = 0
        for row in rows:
            self._touch_enterprise(db, row.credit_code, row.enterprise, stamp)
            cur = db.execute(
                "INSERT INTO history (import_id, source_row, credit_code, enterprise_name, year, clause_id, choice,"
                " amount_fen, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (credit_code, year, clause_id, choice, amount_fen) DO NOTHING",
                (import_id, row.source_row, row.credit_code, row.enterprise, row.year, row.clause_id,
                 row.choice or "", to_fen(row.amount), row.note),
            )
            added += cur.rowcount
        db.execute("UPDATE history_imports SET rows_added = ? WHERE id = ?", (added, import_id))
        return added

    def history(self) -> list[HistoryRow]:
        return [
            HistoryRow(r["credit_code"], r["enterprise_name"], r["year"], r["clause_id"], r["choice"] or None,
                       from_fen(r["amount_fen"]), r["note"], r["source_row"])
            for r in self._query("SELECT * FROM history ORDER BY year, id")
        ]

    # reviews -----------------------------------------------------------------------

    def start_review(self, year: int, source: str) -> tuple[int, list[Mapping[str, Any]]]:
        """Log the start of a review; returns its id and earlier reviews of the year that
        never finished (a run that was killed)."""
        with self.transaction() as db:
            unfinished = [
                dict(r)
                for r in db.execute(
                    "SELECT * FROM reviews WHERE year = ? AND finished_at IS NULL ORDER BY id", (year,)
                ).fetchall()
            ]
            cur = db.execute(
                "INSERT INTO reviews (year, source, started_at) VALUES (?, ?, ?)", (year, source, now())
            )
            return int(cur.lastrowid or 0), unfinished

    def finish_review(self, db: sqlite3.Connection, review_id: int) -> None:
        """Mark the review and every earlier unfinished one of its year as completed."""
        year = db.execute("SELECT year FROM reviews WHERE id = ?", (review_id,)).fetchone()[0]
        db.execute(
            "UPDATE reviews SET finished_at = ? WHERE year = ? AND finished_at IS NULL AND id <= ?",
            (now(), year, review_id),
        )


_AWARD_COLUMNS = (
    "credit_code",
    "year",
    "article",
    "clause_id",
    "choice",
    "computed_fen",
    "amount_fen",
    "paid",
    "status",
    "outcome",
    "binding_cap",
    "reason",
    "trace_json",
    "policy_id",
    "policy_version",
)


def _stored_claim(r: sqlite3.Row) -> StoredClaim:
    keys = r.keys()
    return StoredClaim(
        claim_id=r["claim_id"] if "claim_id" in keys else r["id"],
        declaration_id=r["declaration_id"],
        seq=r["seq"],
        file_name=r["file_name"],
        valid=bool(r["valid"]),
        errors=tuple(from_json(r["errors_json"])),
        credit_code=r["credit_code"],
        enterprise=r["enterprise_name"],
        year=r["year"],
        clause_id=r["clause_id"],
        facts=from_json(r["facts_json"]),
        fingerprint=r["fingerprint"],
    )


def _busy(path: Path, exc: sqlite3.Error) -> RegistryError:
    if "locked" in str(exc) or "busy" in str(exc):
        return RegistryError(
            "REGISTRY_BUSY",
            f"台账数据库 {path} 正被另一个程序使用（等待{BUSY_TIMEOUT_MS // 1000}秒后仍未释放），请稍后再试",
            path=str(path),
        )
    return RegistryError("REGISTRY_UNREADABLE", f"无法使用台账数据库 {path}：{exc}", path=str(path))


@contextmanager
def open_registry(path: str | Path | None = None) -> Iterator[Registry]:
    """Open (creating and migrating if needed) the registry file at ``path``."""
    db_path = Path(path or default_db_path())
    if db_path.is_dir():
        raise RegistryError("REGISTRY_IS_DIRECTORY", f"台账数据库路径 {db_path} 是一个文件夹，请指定文件", path=str(db_path))
    if not db_path.parent.exists():
        raise RegistryError(
            "REGISTRY_DIR_MISSING", f"台账数据库所在的文件夹 {db_path.parent} 不存在", path=str(db_path)
        )
    try:
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
        conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as exc:
        raise _busy(db_path, exc) from None
    conn.row_factory = sqlite3.Row
    try:
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":  # e.g. a network drive; still safe, only slower
                conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute("PRAGMA synchronous = FULL")
            registry = Registry(conn, db_path)
            registry.migrate()
        except sqlite3.DatabaseError as exc:
            raise RegistryError(
                "REGISTRY_UNREADABLE",
                f"{db_path} 不是有效的台账数据库（{exc}），请检查 --db 参数",
                path=str(db_path),
            ) from None
        yield registry
    finally:
        conn.close()
