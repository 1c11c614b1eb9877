"""The one SQL implementation of the key store, shared by the SQLite and PostgreSQL backends."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import attrs

from smime.keystore import (
    AlertRecord,
    AuditEntry,
    DuplicateKeyError,
    ImportFileError,
    KeyNotFoundError,
    KeyRecord,
    PendingChange,
)
from smime.keystore._cert import CertificateParseError, CertInfo, domain_of, parse_pem
from smime.keystore._schema import STEPS, VERSION

_KEY_COLUMNS = (
    "id, kind, name, fingerprint, subject, emails, domains, not_before, not_after, pem, pinned, "
    "revoked, first_seen, last_seen, last_used, use_count, source_message_id, capabilities, obtained, "
    "can_encrypt, can_sign"
)
_INSERT_COLUMNS = (
    "id", "kind", "name", "fingerprint", "subject", "emails", "domains", "not_before", "not_after",
    "can_encrypt", "can_sign", "pem", "size", "pinned", "first_seen", "last_seen",
    "source_message_id", "capabilities", "obtained",
)  # fmt: skip
# Entries per bulk statement during an import: big enough that per-statement overhead vanishes,
# small enough that a batch's rows stay a few MB.
_IMPORT_BATCH = 5000
# Names per "name IN (...)" probe: well under SQLite's and PostgreSQL's parameter limits.
_PROBE = 500


def _epoch(now: datetime | None) -> int:
    return int(now.timestamp()) if now is not None else int(time.time())


def _split(text: str) -> tuple[str, ...]:
    return tuple(x for x in text.split(",") if x)


def _key(row: Sequence[Any]) -> KeyRecord:
    return KeyRecord(
        id=row[0], kind=row[1], name=row[2], fingerprint=row[3], subject=row[4],
        emails=_split(row[5]), domains=_split(row[6]), not_before=row[7], not_after=row[8],
        pem=row[9], pinned=bool(row[10]), revoked=bool(row[11]), first_seen=row[12],
        last_seen=row[13], last_used=row[14], use_count=row[15], source_message_id=row[16],
        capabilities=_split(row[17]), obtained=row[18], can_encrypt=bool(row[19]),
        can_sign=bool(row[20]) if row[20] is not None else True,
    )  # fmt: skip


def _pending(row: Sequence[Any]) -> PendingChange:
    return PendingChange(
        id=row[0], address=row[1], domain=row[2], old_fingerprint=row[3], new_fingerprint=row[4],
        message_id=row[5], reason=row[6], created=row[7], pem=row[8], capabilities=_split(row[9]),
    )  # fmt: skip


@attrs.frozen
class HarvestOutcome:
    """What the store did with one harvested certificate."""

    action: str  # "stored", "refreshed", "replaced", "held", "skipped"
    reason: str
    key: KeyRecord | None = None
    pending_id: int | None = None
    alerts: tuple[str, ...] = ()


class SqlKeyStore:
    """Key store over a DB-API connection; subclasses supply the dialect hooks."""

    serial = "INTEGER PRIMARY KEY"

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._upgrade()

    # -- dialect hooks -------------------------------------------------------------------
    def _sql(self, text: str) -> str:
        return text

    @contextmanager
    def _write(self) -> Iterator[Callable[..., Any]]:
        raise NotImplementedError

    def _insert_id(self, ex: Callable[..., Any], sql: str, params: Sequence[Any]) -> int:
        raise NotImplementedError

    def _reserve_ids(self, ex: Callable[..., Any], count: int) -> list[int]:
        """`count` fresh ids for the keys table; called with the write lock held."""
        raise NotImplementedError

    def _load(self, ex: Callable[..., Any], table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert many rows in one statement or stream (executemany / COPY)."""
        raise NotImplementedError

    def _after_load(self, ex: Callable[..., Any]) -> None:
        """Called in the import transaction after a bulk load (statistics refresh)."""

    # -- plumbing ------------------------------------------------------------------------
    def _q(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        cur = self._conn.execute(self._sql(sql), tuple(params))
        rows = cur.fetchall()
        self._end_read()
        return list(rows)

    def _end_read(self) -> None:
        pass

    def close(self) -> None:
        self._conn.close()

    def _upgrade(self) -> None:
        with self._write() as ex:
            ex("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            rows = ex("SELECT version FROM schema_version").fetchall()
            current = rows[0][0] if rows else 0
            if not rows:
                ex("INSERT INTO schema_version (version) VALUES (0)")
            for step in STEPS[current:]:
                for statement in step:
                    ex(statement.replace("{serial}", self.serial))
            if current < 2 <= VERSION:
                self._fill_can_sign(ex)
            if current < VERSION:
                ex("UPDATE schema_version SET version = ?", (VERSION,))

    def _fill_can_sign(self, ex: Callable[..., Any]) -> None:
        # Step 2 added can_sign; rows from step 1 get it from their certificate, once.
        for key_id, pem in ex("SELECT id, pem FROM keys WHERE can_sign IS NULL").fetchall():
            try:
                can_sign = parse_pem(pem).can_sign
            except CertificateParseError:
                can_sign = False
            ex("UPDATE keys SET can_sign = ? WHERE id = ?", (int(can_sign), key_id))

    def schema_version(self) -> int:
        return int(self._q("SELECT version FROM schema_version")[0][0])

    def _audit(self, ex: Callable[..., Any], at: int, actor: str, action: str, name: str,
               old: str | None, new: str | None, domain: str = "", message_id: str | None = None,
               detail: str = "") -> None:  # fmt: skip
        ex(
            "INSERT INTO audit (at, actor, action, name, old_fingerprint, new_fingerprint, domain,"
            " message_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (at, actor, action, name, old, new, domain, message_id, detail),
        )

    def _alert(self, ex: Callable[..., Any], at: int, kind: str, message: str) -> str:
        ex("INSERT INTO alerts (at, kind, message) VALUES (?, ?, ?)", (at, kind, message))
        return message

    def _insert_key(self, ex: Callable[..., Any], kind: str, name: str, info: CertInfo, at: int,
                    obtained: str, message_id: str | None = None,
                    capabilities: Sequence[str] = (), pinned: bool = False) -> int:  # fmt: skip
        row = _key_row(kind, name, info, at, obtained, message_id, capabilities, pinned)
        key_id = self._insert_id(
            ex,
            f"INSERT INTO keys ({', '.join(_INSERT_COLUMNS[1:])}) VALUES ({', '.join('?' for _ in row)})",
            row,
        )
        for key_name in _name_rows(key_id, info):
            ex("INSERT INTO key_names (key_id, value, is_domain) VALUES (?, ?, ?)", key_name)
        if kind == "harvested":
            ex("UPDATE harvested_total SET total = total + ?", (_size(info),))
        return key_id

    def _delete_key(self, ex: Callable[..., Any], key_id: int) -> None:
        rows = ex("SELECT kind, size FROM keys WHERE id = ?", (key_id,)).fetchall()
        ex("DELETE FROM key_names WHERE key_id = ?", (key_id,))
        ex("DELETE FROM keys WHERE id = ?", (key_id,))
        if rows and rows[0][0] == "harvested":
            ex("UPDATE harvested_total SET total = total - ?", (rows[0][1],))

    def _get(self, ex: Callable[..., Any] | None, sql_where: str, params: Sequence[Any]) -> KeyRecord | None:
        sql = f"SELECT {_KEY_COLUMNS} FROM keys WHERE {sql_where}"
        rows = ex(sql, params).fetchall() if ex else self._q(sql, params)
        return _key(rows[0]) if rows else None

    # -- public keys ---------------------------------------------------------------------
    def add_public(self, name: str, pem: str, *, actor: str = "admin", now: datetime | None = None) -> KeyRecord:
        _check_name(name)
        info = parse_pem(pem)
        at = _epoch(now)
        with self._write() as ex:
            if self._get(ex, "kind = 'public' AND name = ?", (name,)):
                raise DuplicateKeyError(f"a public key named {name!r} already exists")
            self._insert_key(ex, "public", name, info, at, "added")
            self._audit(ex, at, actor, "add", name, None, info.fingerprint)
        return self.get(name)

    def get(self, name: str, *, kind: str = "public") -> KeyRecord:
        key = self._get(None, "kind = ? AND name = ?", (kind, name))
        if key is None:
            key = self._get(None, "kind = ? AND fingerprint = ?", (kind, name.lower()))
        if key is None:
            raise KeyNotFoundError(f"no {kind} key named {name!r}")
        return key

    def list_keys(self, *, kind: str = "public", query: str | None = None,
                  expires_before: int | None = None, limit: int | None = None) -> list[KeyRecord]:  # fmt: skip
        where: list[str] = ["kind = ?"]
        params: list[object] = [kind]
        if query:
            q = query.lower()
            where.append(
                "(lower(name) LIKE ? OR fingerprint LIKE ? OR id IN (SELECT key_id FROM key_names WHERE value = ? OR value LIKE ?))"
            )
            params += [f"%{q}%", f"{q}%", q, f"%@{q}"]
        if expires_before is not None:
            where.append("not_after < ?")
            params.append(expires_before)
        sql = f"SELECT {_KEY_COLUMNS} FROM keys WHERE {' AND '.join(where)} ORDER BY name"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_key(r) for r in self._q(sql, params)]

    def remove(self, name: str, *, kind: str = "public", actor: str = "admin") -> None:
        key = self.get(name, kind=kind)
        with self._write() as ex:
            self._delete_key(ex, key.id)
            self._audit(ex, _epoch(None), actor, "remove", key.name, key.fingerprint, None)

    def import_public(self, entries: Sequence[tuple[int, str, str]], *, actor: str = "admin",
                      progress: Callable[[int, int], None] | None = None) -> int:  # fmt: skip
        """Add (line, name, pem) entries in one transaction; any failure changes nothing.

        Every entry is parsed before the store is touched; then, under the write lock, the
        names are checked against the store in bulk and the new keys, their names and their
        audit rows are loaded a batch at a time (executemany on SQLite, COPY on PostgreSQL)
        instead of several statements per key.
        """
        total = len(entries)
        parsed: dict[str, tuple[int, CertInfo]] = {}
        for n, (line, name, pem) in enumerate(entries, 1):
            try:
                _check_name(name)
                info = parse_pem(pem)
            except CertificateParseError as exc:
                raise ImportFileError(line, str(exc)) from None
            first = parsed.get(name)
            if first is None:
                parsed[name] = (line, info)
            elif first[1].fingerprint != info.fingerprint:
                raise ImportFileError(line, f"duplicate name {name!r} with a different certificate (first on line {first[0]})")
            if progress and n % 1000 == 0 and n < total:
                progress(n, total)
        at = _epoch(None)
        with self._write() as ex:
            names = list(parsed)
            stored: dict[str, str] = {}
            for i in range(0, len(names), _PROBE):
                chunk = names[i : i + _PROBE]
                stored.update(ex(f"SELECT name, fingerprint FROM keys WHERE kind = 'public' AND name IN"
                                 f" ({', '.join('?' for _ in chunk)})", chunk).fetchall())  # fmt: skip
            new: list[tuple[str, CertInfo]] = []
            for name, (line, info) in sorted(parsed.items(), key=lambda item: item[1][0]):
                if name not in stored:
                    new.append((name, info))
                elif stored[name] != info.fingerprint:
                    raise ImportFileError(line, f"a different public key named {name!r} already exists")
            ids = self._reserve_ids(ex, len(new)) if new else []
            for i in range(0, len(new), _IMPORT_BATCH):
                batch = list(zip(ids[i : i + _IMPORT_BATCH], new[i : i + _IMPORT_BATCH], strict=True))
                self._load(ex, "keys", _INSERT_COLUMNS,
                           [(key_id, *_key_row("public", name, info, at, "imported")) for key_id, (name, info) in batch])
                self._load(ex, "key_names", ("key_id", "value", "is_domain"),
                           [r for key_id, (_, info) in batch for r in _name_rows(key_id, info)])
                self._load(ex, "audit", ("at", "actor", "action", "name", "old_fingerprint", "new_fingerprint",
                                         "domain", "detail"),
                           [(at, actor, "import", name, None, info.fingerprint, "", "") for _, (name, info) in batch])
            if new:
                self._after_load(ex)
        if progress:
            progress(total, total)
        return len(new)

    # -- lookup support ------------------------------------------------------------------
    def candidates_for(self, address: str) -> list[tuple[KeyRecord, str]]:
        """Every stored key naming `address`, its domain, or a wildcard above it."""
        address = address.lower()
        domain = domain_of(address)
        # A wildcard covers exactly one label (smime/binding.py): `*.example.com` names
        # mail.example.com, not a.mail.example.com, and `*.com` names nothing.
        parent = domain.partition(".")[2]
        wildcards = ["*." + parent] if parent.count(".") >= 1 else []
        values = [address, domain, *wildcards]
        marks = ", ".join("?" for _ in values)
        rows = self._q(
            f"SELECT {', '.join('k.' + c.strip() for c in _KEY_COLUMNS.split(','))}, n.value"
            f" FROM key_names n JOIN keys k ON k.id = n.key_id WHERE n.value IN ({marks})",
            values,
        )
        out = []
        for row in rows:
            value = row[-1]
            how = "address" if value == address else "domain" if value == domain else "wildcard"
            out.append((_key(row[:-1]), how))
        return out

    def record_use(self, key_id: int, now: datetime | None = None) -> None:
        with self._write() as ex:
            ex("UPDATE keys SET last_used = ?, use_count = use_count + 1 WHERE id = ?", (_epoch(now), key_id))

    def set_revoked(self, fingerprint: str, revoked: bool = True, *, actor: str = "admin") -> int:
        with self._write() as ex:
            n = ex("UPDATE keys SET revoked = ? WHERE fingerprint = ?", (int(revoked), fingerprint.lower())).rowcount
            self._audit(ex, _epoch(None), actor, "revoke" if revoked else "unrevoke", fingerprint, fingerprint, fingerprint)
        return int(n)

    def set_pinned(self, name: str, pinned: bool, *, kind: str = "harvested", actor: str = "admin") -> None:
        key = self.get(name, kind=kind)
        with self._write() as ex:
            ex("UPDATE keys SET pinned = ? WHERE id = ?", (int(pinned), key.id))
            self._audit(ex, _epoch(None), actor, "pin" if pinned else "unpin", key.name, key.fingerprint, key.fingerprint)

    def promote(self, name: str, *, new_name: str | None = None, actor: str = "admin") -> KeyRecord:
        key = self.get(name, kind="harvested")
        target = new_name or key.name
        with self._write() as ex:
            if self._get(ex, "kind = 'public' AND name = ?", (target,)):
                raise DuplicateKeyError(f"a public key named {target!r} already exists")
            at = _epoch(None)
            self._insert_key(ex, "public", target, parse_pem(key.pem), at, "promoted")
            self._audit(ex, at, actor, "promote", target, None, key.fingerprint)
        return self.get(target)

    # -- harvesting (decisions are in smime.harvest; this is the transactional part) -----
    def harvest(self, info: CertInfo, *, message_id: str | None, capabilities: Sequence[str],
                obtained: str, now: datetime | None, replace_updated: bool,
                window_seconds: int, size_cap: int, actor: str = "harvester",
                names: Sequence[str] | None = None) -> HarvestOutcome:  # fmt: skip
        # `names`: what to keep the certificate under (default its addresses); a domain name
        # (a partner gateway's certificate) goes through the same 48-hour churn governance,
        # counted against that domain.
        at = _epoch(now)
        caps = ",".join(capabilities)
        alerts: list[str] = []
        with self._write() as ex:
            outcome = None
            for address in (info.emails if names is None else names):
                domain = domain_of(address).removeprefix("*.")
                old = self._get(ex, "kind = 'harvested' AND name = ?", (address,))
                if old is not None and old.fingerprint == info.fingerprint:
                    ex("UPDATE keys SET last_seen = ?, capabilities = ?, source_message_id = ? WHERE id = ?",
                       (at, caps, message_id, old.id))  # fmt: skip
                    outcome = outcome or HarvestOutcome("refreshed", "same certificate seen again")
                    continue
                if old is None:
                    self._insert_key(ex, "harvested", address, info, at, obtained, message_id, capabilities)
                    self._audit(ex, at, actor, "harvest", address, None, info.fingerprint, domain, message_id)
                    outcome = HarvestOutcome("stored", "first key for this "
                                             + ("address" if "@" in address else "domain"))
                    continue
                if not replace_updated:
                    outcome = outcome or HarvestOutcome("skipped", "an updated key arrived but harvesting updated keys is off")
                    continue
                if info.not_before <= old.not_before:
                    outcome = outcome or HarvestOutcome("skipped", "the stored key is as new or newer")
                    continue
                hold = None
                if old.pinned:
                    hold = f"the key for {address} is pinned"
                else:
                    recent = ex(
                        "SELECT count(*) FROM audit WHERE at >= ? AND action IN ('harvest', 'replace', 'held')"
                        " AND (domain = ? OR (message_id IS NOT NULL AND message_id = ?))",
                        (at - window_seconds, domain, message_id),
                    ).fetchone()[0]
                    if recent:
                        hold = (f"another key change for {domain} or from message {message_id} "
                                f"within {window_seconds // 3600} h")  # fmt: skip
                if hold:
                    pid = self._insert_id(
                        ex,
                        "INSERT INTO pending (address, domain, old_fingerprint, new_fingerprint, message_id,"
                        " reason, created, pem, capabilities) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (address, domain, old.fingerprint, info.fingerprint, message_id, hold, at, info.pem, caps),
                    )
                    self._audit(ex, at, actor, "held", address, old.fingerprint, info.fingerprint, domain, message_id, hold)
                    alerts.append(self._alert(ex, at, "key-change-held",
                                              f"key change for {address} held for review (pending #{pid}): {hold}; "
                                              f"old {old.fingerprint} new {info.fingerprint}"))  # fmt: skip
                    outcome = HarvestOutcome("held", hold, pending_id=pid)
                    continue
                self._delete_key(ex, old.id)
                self._insert_key(ex, "harvested", address, info, at, obtained, message_id, capabilities)
                self._audit(ex, at, actor, "replace", address, old.fingerprint, info.fingerprint, domain, message_id)
                outcome = HarvestOutcome("replaced", "a newer certificate for this "
                                         + ("address" if "@" in address else "domain"))
            alerts += self._enforce_cap(ex, at, size_cap)
        outcome = outcome or HarvestOutcome("skipped", "the certificate names no e-mail address")
        key = self._get(None, "kind = 'harvested' AND fingerprint = ?", (info.fingerprint,))
        return attrs.evolve(outcome, key=key, alerts=tuple(alerts))

    def _enforce_cap(self, ex: Callable[..., Any], at: int, cap: int) -> list[str]:
        total = ex("SELECT total FROM harvested_total").fetchone()[0]
        if total <= cap:
            return []
        # Evict down to 1% below the cap, not just below it: finding the least recently used
        # keys sorts every harvested key, and a full store would otherwise pay that sort (and
        # raise a size-cap alert) on every single harvest.
        target, evicted = cap - cap // 100, 0
        while total > target:
            rows = ex(
                "SELECT id, name, fingerprint, size FROM keys WHERE kind = 'harvested' AND pinned = 0"
                " ORDER BY coalesce(last_used, last_seen), last_seen, id LIMIT 1000"
            ).fetchall()
            if not rows:
                break  # only pinned keys are left: they are never evicted
            for key_id, name, fp, size in rows:
                if total <= target:
                    break
                self._delete_key(ex, key_id)
                self._audit(ex, at, "harvester", "evict", name, fp, None, detail="size cap")
                total -= size
                evicted += 1
        return [self._alert(ex, at, "size-cap", f"harvested store over its {cap} byte cap: evicted {evicted} "
                            f"least recently used keys, now {total} bytes")]  # fmt: skip

    def harvested_size(self) -> int:
        return int(self._q("SELECT total FROM harvested_total")[0][0])

    def pending(self) -> list[PendingChange]:
        rows = self._q(
            "SELECT id, address, domain, old_fingerprint, new_fingerprint, message_id, reason, created, pem,"
            " capabilities FROM pending WHERE status = 'pending' ORDER BY id"
        )
        return [_pending(r) for r in rows]

    def resolve_pending(self, change_id: int, accept: bool, *, actor: str = "admin") -> PendingChange:
        at = _epoch(None)
        with self._write() as ex:
            rows = ex(
                "SELECT id, address, domain, old_fingerprint, new_fingerprint, message_id, reason, created, pem,"
                " capabilities FROM pending WHERE status = 'pending' AND id = ?", (change_id,)
            ).fetchall()  # fmt: skip
            if not rows:
                raise KeyNotFoundError(f"no pending change #{change_id}")
            change = _pending(rows[0])
            ex("UPDATE pending SET status = ? WHERE id = ?", ("accepted" if accept else "rejected", change_id))
            if accept:
                old = self._get(ex, "kind = 'harvested' AND name = ?", (change.address,))
                pinned = bool(old and old.pinned)
                if old is not None:
                    self._delete_key(ex, old.id)
                self._insert_key(ex, "harvested", change.address, parse_pem(change.pem), at, "accepted",
                                 change.message_id, change.capabilities, pinned)  # fmt: skip
            self._audit(ex, at, actor, "accept" if accept else "reject", change.address,
                        change.old_fingerprint, change.new_fingerprint, change.domain, change.message_id)  # fmt: skip
        return change

    def audit(self, limit: int = 100) -> list[AuditEntry]:
        rows = self._q(
            "SELECT id, at, actor, action, name, old_fingerprint, new_fingerprint, detail FROM audit"
            f" ORDER BY id DESC LIMIT {int(limit)}"
        )
        return [AuditEntry(*r) for r in rows]

    def alerts(self, limit: int = 100) -> list[AlertRecord]:
        rows = self._q(f"SELECT id, at, kind, message FROM alerts ORDER BY id DESC LIMIT {int(limit)}")
        return [AlertRecord(*r) for r in rows]


def _key_row(kind: str, name: str, info: CertInfo, at: int, obtained: str, message_id: str | None = None,
             capabilities: Sequence[str] = (), pinned: bool = False) -> tuple[Any, ...]:  # fmt: skip
    """The keys row for `info`, in _INSERT_COLUMNS order without the id."""
    return (kind, name, info.fingerprint, info.subject, ",".join(info.emails), ",".join(info.domains),
            info.not_before, info.not_after, int(info.can_encrypt), int(info.can_sign), info.pem,
            _size(info), int(pinned), at, at, message_id, ",".join(capabilities), obtained)  # fmt: skip


def _size(info: CertInfo) -> int:
    # What a key costs against the harvested store's cap: its PEM plus the row's overhead.
    return len(info.pem) + 512


def _name_rows(key_id: int, info: CertInfo) -> list[tuple[int, str, int]]:
    return [(key_id, e, 0) for e in info.emails] + [(key_id, d, 1) for d in info.domains]


def _check_name(name: str) -> None:
    if not name or name != name.strip() or any(c in name for c in "\r\n\t") or name.startswith("#"):
        raise CertificateParseError(f"invalid key name {name!r}: one line, no surrounding spaces")
