"""Recorded provider answers, replayed instead of asking the servers (`filterlang test
--services FILE`, a suite case's `services`): offline suites test filters that lean on SPF,
DKIM, DMARC, LDAP groups, DNS lists and reputation without a network.

A TOML or JSON file (or a suite case's inline table) with any of::

    authentication = {spf = "Fail", spf_helo = "None", dkim = "none", dmarc = "Fail",
                      dmarc_policy = "reject"}
    ldap = {engineers = ["alice@example.org"], sales = []}   # group -> its members
    dnslist = {"zen.example" = "127.0.0.2", "bl.example" = ""}  # zone -> code ("": not listed)
    reputation = -7.5                                          # the connecting IP's score
    scanning = {spam = "spam", spam_score = 15, virus = "infected", virus_name = "Eicar"}

Recorded scanner verdicts reach the content filters (spam-verdict, spam-score,
virus-verdict, $SpamScore ...); where the configuration has the scanner, a recorded verdict
stands for its answer (it is not asked), so the mail policies' spam_action and virus_action
act on it as they would on the scanner's (runtime.pipeline.stages.scanning).

A provider the file does not mention stays unavailable (its rules are false, and say so in
the trace), as in a gateway that does not define it. Every key is checked: a misspelt one is
an error naming the nearest, never an answer quietly left out.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrs import field, frozen

from runtime.config.schema import unknown_keys
from runtime.engine.providers.scanners import SpamVerdict, VirusVerdict
from runtime.engine.services import Services

RECORDED_KEYS = ("authentication", "ldap", "dnslist", "reputation", "scanning")
AUTH_KEYS = {"spf": "spf_result", "spf_helo": "spf_helo", "dkim": "dkim_result",
             "dmarc": "dmarc_result", "dmarc_policy": "policy"}


class RecordedError(ValueError):
    """The recorded answers cannot be used; the text names the file and the key."""


@frozen
class StatedAuth:
    """SPF, DKIM and DMARC results as recorded (runtime.engine.services.AuthProvider)."""

    spf_result: str = "None"
    spf_helo: str = "None"
    dkim_result: str = "none"
    dmarc_result: str = "None"
    policy: str = "none"

    def spf(self, identity: str) -> str:
        return self.spf_helo if identity.strip().lower() == "helo" else self.spf_result

    def dkim(self) -> str:
        return self.dkim_result

    def dmarc(self) -> str:
        return self.dmarc_result

    def dmarc_policy(self) -> str:
        return self.policy

    def header_parts(self, authserv_id: str) -> list[str]:
        """The Authentication-Results the gateway would stamp with these results (RFC 8601),
        so a configuration with [authentication] stamps recorded results too."""
        dkim = "fail" if self.dkim_result == "hardfail" else self.dkim_result.lower()
        return [f"{authserv_id};", f"spf={self.spf_result.lower()} (recorded);",
                f"dkim={dkim};", f"dmarc={self.dmarc_result.lower()} "
                f"policy.dmarc={self.policy.lower()}"]


@frozen
class RecordedGroups:
    """LDAP group memberships as recorded: group (lower case) -> member addresses."""

    groups: Mapping[str, frozenset[str]] = field(factory=dict)
    query: str = "(recorded)"

    def in_group(self, address: str, group: str) -> bool:
        return address.strip().lower() in self.groups.get(group.strip().lower(), frozenset())

    def policy_check(self, address: str, entry: str) -> bool:
        return self.in_group(address, entry.partition(".ldapgroup:")[2])


@frozen
class RecordedLists:
    answers: Mapping[str, str | None] = field(factory=dict)

    def lookup(self, zone: str, ip: str) -> str | None:
        return self.answers.get(zone.strip(".").lower())


@frozen
class RecordedScore:
    value: float | None

    def score(self, ip: str) -> float | None:
        return self.value


def _auth(table: object, where: str) -> StatedAuth:
    if not isinstance(table, dict):
        raise RecordedError(f"{where}authentication: must be a table, e.g. {{spf = 'Pass', "
                            "dkim = 'pass', dmarc = 'Pass', dmarc_policy = 'none'}")
    values: dict[str, str] = {}
    for key, value in table.items():
        if key not in AUTH_KEYS:
            raise RecordedError(f"{where}authentication.{key}: unknown key; use "
                                f"{', '.join(AUTH_KEYS)}")
        if not isinstance(value, str):
            raise RecordedError(f"{where}authentication.{key}: must be a string")
        values[AUTH_KEYS[key]] = value
    return StatedAuth(**values)


SCAN_KEYS: dict[str, type | tuple[type, ...]] = {
    "spam": str, "spam_score": (int, float), "virus": str, "virus_name": str}


def scanning(table: object, where: str) -> tuple[SpamVerdict | None, VirusVerdict | None]:
    """`{spam = "spam", spam_score = 15, virus = "infected", virus_name = "X"}`: what Rspamd
    and clamd would have answered (a verdict not stated stays unavailable)."""
    example = "{spam = 'spam', spam_score = 15, virus = 'infected', virus_name = 'Eicar'}"
    if not isinstance(table, dict):
        raise RecordedError(f"{where}scanning must be a table, e.g. {example}")
    for key, value in table.items():
        kind = SCAN_KEYS.get(key)
        if kind is None:
            raise RecordedError(f"{where}scanning.{key}: unknown key; use {', '.join(SCAN_KEYS)}")
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RecordedError(f"{where}scanning.{key} must be "
                                f"{'a number' if key == 'spam_score' else 'a string'}, e.g. {example}")
    spam = virus = None
    if "spam" in table or "spam_score" in table:
        spam = SpamVerdict(str(table.get("spam", "ham")), float(table.get("spam_score", 0.0)),
                           "stated")
    if "virus" in table or "virus_name" in table:
        virus = VirusVerdict(str(table.get("virus", "infected" if table.get("virus_name")
                                           else "clean")), str(table.get("virus_name", "")))
    return spam, virus


def load_recorded(data: object, where: str) -> Services:
    """Services answering from `data` (a parsed file or table); `where` prefixes every
    message ("answers.toml: " or "suite.toml: case 'x': services.")."""
    if not isinstance(data, dict):
        raise RecordedError(f"{where}must be a table of recorded answers "
                            f"({', '.join(RECORDED_KEYS)})")
    bad = unknown_keys(data, RECORDED_KEYS, "")
    if bad:
        raise RecordedError("\n".join(where + b for b in bad))
    services = Services()
    if "authentication" in data:
        services.auth = _auth(data["authentication"], where)
    if "ldap" in data:
        groups = data["ldap"]
        if not isinstance(groups, dict) or not all(
                isinstance(m, list) and all(isinstance(a, str) for a in m)
                for m in groups.values()):
            raise RecordedError(f"{where}ldap: must map each group to its members' addresses, "
                                "e.g. {engineers = ['alice@example.org']}")
        services.ldap = RecordedGroups({g.strip().lower(): frozenset(a.strip().lower() for a in m)
                                        for g, m in groups.items()})
    if "dnslist" in data:
        lists = data["dnslist"]
        if not isinstance(lists, dict) or not all(isinstance(c, str) for c in lists.values()):
            raise RecordedError(f"{where}dnslist: must map each zone to its answer, e.g. "
                                "{\"zen.example\" = \"127.0.0.2\"} (\"\" for not listed)")
        services.dnslist = RecordedLists({z.strip(".").lower(): (c or None)
                                          for z, c in lists.items()})
    if "reputation" in data:
        score = data["reputation"]
        if isinstance(score, bool) or not isinstance(score, int | float) \
                or not -10 <= score <= 10:
            raise RecordedError(f"{where}reputation: must be a score from -10 to 10, "
                                f"not {score!r}")
        services.reputation = RecordedScore(float(score))
    if "scanning" in data:
        services.spam, services.virus = scanning(data["scanning"], where)
    return services


def read_recorded(path: Path) -> Services:
    """The answers recorded in `path` (.json: JSON; anything else: TOML)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordedError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") \
            from None
    try:
        data: Any = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise RecordedError(f"{path}: {exc}; fix the {kind} syntax") from None
    return load_recorded(data, f"{path}: ")


def summary(services: object) -> dict[str, Any]:
    """Each provider's answers for the trace (the mail flow stage's record): what the
    filters were given, live or recorded; a provider not there is left out."""
    out: dict[str, Any] = {}
    auth = getattr(services, "auth", None)
    if auth is not None:
        out["spf"] = auth.spf("")
        out["spf_helo"] = auth.spf("helo")
        out["dkim"] = auth.dkim()
        out["dmarc"] = auth.dmarc()
        out["dmarc_policy"] = auth.dmarc_policy()
    lists = getattr(services, "dnslist", None)
    if lists is not None:
        out["dnslist"] = {z: c or "not listed" for z, c in getattr(lists, "answers", {}).items()}
        listed = getattr(lists, "listed", None)
        if listed:
            out["dnslist_listed"] = dict(listed)
        problems = getattr(lists, "problems", None)
        if problems:
            out["dnslist_problems"] = dict(problems)
    rep = getattr(services, "reputation", None)
    if rep is not None:
        out["reputation"] = rep.score("")
    ldap = getattr(services, "ldap", None)
    if ldap is not None:
        answers = getattr(ldap, "answers", None)
        if answers is not None:
            out["ldap"] = {f"{a} in {g}" + (f" ({q})" if q else ""): hit
                           for (q, a, g), hit in sorted(answers.items())}
        else:
            out["ldap"] = {g: sorted(m) for g, m in getattr(ldap, "groups", {}).items()}
        problems = getattr(ldap, "problems", None)
        if problems:
            out["ldap_problems"] = dict(problems)
    return out
