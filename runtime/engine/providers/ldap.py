"""LDAP group queries (`[ldap.NAME]`, reference 6.3) over ldap3, for `mail-from-group`,
`rcpt-to-group` and mail policies' `NAME.ldapgroup: GROUP` entries.

A query's filter is a template: {a} the address, {u} its local part, {d} its domain, {g} the
group's name, each escaped as RFC 4515 says (ldap3's escape_filter_chars) before it goes in, so
an address such as `*)(uid=*` cannot widen the search. With {g} an address is a member when
the search finds an entry; without it the search finds the address's entries, and the values
of `attribute` name its groups.

ldap3 blocks, so the gateway asks from a thread (`asyncio.to_thread`) before the filters run,
for the addresses and groups the message can need (`Directory.answers`); the rules then read
the answers (`LdapAnswers`). A server that does not answer, refuses the bind or fails the
search is a temporary failure (`LdapUnavailable`): the rule that needed the answer fails its
stage as temporary, and the message waits in the queue and is tried again; it is never "not in
the group". Answers, members or not, are kept `cache_ttl` seconds, at most `cache_size` of them;
failures are never kept.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from attrs import field, frozen

from runtime.config.config import LdapQuery
from runtime.engine.services import TemporaryFailure

Pair = tuple[str, str]  # (address, group), both lower case


class LdapUnavailable(TemporaryFailure):
    """The directory did not give an answer; the message is retried later."""


def _key(address: str, group: str) -> Pair:
    return address.strip().lower(), group.strip().lower()


def _group_name(value: object) -> str:
    """A group as an attribute names it: a DN (memberOf) counts by its first RDN's value."""
    text = str(value).strip()
    first = text.split(",", 1)[0]
    if "=" in first and "," in text:
        return first.split("=", 1)[1].strip().lower()
    return text.lower()


class Directory:
    """One `[ldap.NAME]` query's client: bound connections kept for reuse (one thread at a
    time on each), and the answer cache. Thread-safe; every call blocks."""

    def __init__(self, query: LdapQuery, clock: Callable[[], float] = time.monotonic) -> None:
        self.query = query
        self.clock = clock
        self._lock = threading.Lock()
        self._idle: list[Any] = []  # ldap3 Connections, bound
        # (address, group) -> (expires, member?); with no {g}: (address, "") -> (expires, groups)
        self._cache: OrderedDict[Pair, tuple[float, Any]] = OrderedDict()
        self.by_group = "{g}" in query.filter

    # --- the cache ------------------------------------------------------------------------
    def _cached(self, key: Pair) -> Any:
        with self._lock:
            hit = self._cache.get(key)
            if hit is None:
                return None
            if hit[0] <= self.clock():
                del self._cache[key]
                return None
            return hit[1]

    def _keep(self, key: Pair, value: Any) -> None:
        q = self.query
        if q.cache_ttl <= 0 or q.cache_size <= 0:
            return
        with self._lock:
            self._cache[key] = (self.clock() + q.cache_ttl, value)
            self._cache.move_to_end(key)
            while len(self._cache) > q.cache_size:  # bounded: the oldest answer goes first
                self._cache.popitem(last=False)

    # --- the server -----------------------------------------------------------------------
    def _connect(self) -> Any:
        import ssl

        import ldap3

        q = self.query
        tls = None
        if q.url.lower().startswith("ldaps://"):
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED,
                            ca_certs_file=str(q.ca_file) if q.ca_file else None)
        server = ldap3.Server(q.url, connect_timeout=q.timeout, tls=tls, get_info=ldap3.NONE)
        # ldap3 packs the receive timeout into SO_RCVTIMEO as whole seconds.
        conn = ldap3.Connection(server, user=q.bind_dn, password=q.bind_password,
                                receive_timeout=max(1, math.ceil(q.timeout)), read_only=True,
                                raise_exceptions=False)
        if not conn.bind():
            problem = (conn.result or {}).get("description", "bind refused")
            conn.unbind()
            raise LdapUnavailable(f"LDAP {q.name} ({q.url}): bind as "
                                  f"{q.bind_dn or '(anonymous)'} failed: {problem}")
        return conn

    def _search(self, conn: Any, search_filter: str, attributes: list[str]) -> list[Any]:
        q = self.query
        # The server's answer size is capped: membership needs one entry, groups a few.
        conn.search(q.base, search_filter, attributes=attributes,
                    size_limit=1 if self.by_group else 1000, time_limit=max(1, int(q.timeout)))
        result = conn.result or {}
        code = result.get("result", 0)
        if code not in (0, 4):  # success, sizeLimitExceeded (we asked for few entries)
            raise LdapUnavailable(f"LDAP {q.name} ({q.url}): search under {q.base} failed: "
                                  f"{result.get('description', code)} "
                                  f"{result.get('message', '')}".rstrip())
        return list(conn.response or [])

    def _filter(self, address: str, group: str) -> str:
        from ldap3.utils.conv import escape_filter_chars

        local, _, domain = address.rpartition("@")
        values = {"a": address, "u": local or address, "d": domain, "g": group}
        return self.query.filter.format(**{k: escape_filter_chars(v) for k, v in values.items()})

    def _ask(self, wanted: list[Pair]) -> dict[Pair, Any]:
        """The server's answers for `wanted` keys, over one connection."""
        from ldap3.core.exceptions import LDAPException

        with self._lock:
            conn = self._idle.pop() if self._idle else None
        got: dict[Pair, Any] = {}
        try:
            if conn is None:
                conn = self._connect()
            for address, group in wanted:
                if self.by_group:
                    got[(address, group)] = bool(
                        [e for e in self._search(conn, self._filter(address, group), [])
                         if e.get("type") == "searchResEntry"])
                else:
                    attr = self.query.attribute or "cn"
                    entries = self._search(conn, self._filter(address, ""), [attr])
                    got[(address, "")] = frozenset(
                        _group_name(v) for e in entries if e.get("type") == "searchResEntry"
                        for v in _values(e.get("attributes", {}).get(attr)))
        except LdapUnavailable:
            _close(conn)
            raise
        except (LDAPException, OSError) as exc:
            _close(conn)
            q = self.query
            raise LdapUnavailable(f"LDAP {q.name} ({q.url}) did not answer: "
                                  f"{type(exc).__name__}: {exc}") from None
        with self._lock:
            self._idle.append(conn)
        return got

    def answers(self, pairs: Iterable[Pair]) -> dict[Pair, bool]:
        """Membership of each (address, group): from the cache, else asked now (blocking).
        Raises LdapUnavailable when the server does not give the answers."""
        keys = {_key(a, g) for a, g in pairs if a.strip()}
        out: dict[Pair, bool] = {}
        missing: list[Pair] = []
        for address, group in sorted(keys):
            lookup = (address, group) if self.by_group else (address, "")
            hit = self._cached(lookup)
            if hit is None:
                if lookup not in missing:
                    missing.append(lookup)
                continue
            out[(address, group)] = bool(hit) if self.by_group else group in hit
        if missing:
            got = self._ask(missing)
            for lookup, value in got.items():
                self._keep(lookup, value)
            for address, group in keys - set(out):
                value = got[(address, group) if self.by_group else (address, "")]
                out[(address, group)] = bool(value) if self.by_group else group in value
        for address, group in keys:
            out.setdefault((address, group), False)  # (an empty address: never a member)
        return out

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _close(conn)


def _values(value: object) -> list[object]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _close(conn: Any) -> None:
    if conn is None:
        return
    with contextlib.suppress(Exception):  # a broken connection has nothing left to close
        conn.unbind()


@frozen
class LdapAnswers:
    """One message's group memberships, asked before the filters ran. `query` is the group
    query of the message's listener (the one the rules use); `problems` says, per query, why
    the server gave no answers. An answer not asked beforehand (an address a filter put in
    the envelope) is asked then, through the same cache."""

    query: str
    answers: Mapping[tuple[str, str, str], bool]  # (query, address, group) -> member?
    problems: Mapping[str, str] = field(factory=dict)
    directories: Mapping[str, Directory] = field(factory=dict, eq=False, repr=False)

    def member(self, query: str, address: str, group: str) -> bool:
        address, group = _key(address, group)
        if not address:
            return False  # the null sender is in no group
        found = self.answers.get((query, address, group))
        if found is not None:
            return found
        if query in self.problems:
            raise LdapUnavailable(self.problems[query])
        directory = self.directories.get(query)
        if directory is None:
            raise LdapUnavailable(f"no LDAP query {query!r} is configured")
        return directory.answers([(address, group)])[(address, group)]

    def in_group(self, address: str, group: str) -> bool:
        return self.member(self.query, address, group)

    def policy_check(self, address: str, entry: str) -> bool:
        """A mail policy's `NAME.ldapgroup: GROUP` entry (runtime.pipeline.policies.LdapCheck)."""
        query, _, group = entry.partition(".ldapgroup:")
        return self.member(query.strip(), address, group)

    def describe(self, address: str, group: str) -> str:
        """The answer as the trace shows it."""
        where = f"ldap {self.query}"
        try:
            hit = self.in_group(address, group)
        except LdapUnavailable as exc:
            return f"{where}: {exc}"
        return f"{where}: {address or '<>'} {'is' if hit else 'is not'} in {group}"
