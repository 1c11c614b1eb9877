"""Incoming and outgoing mail policies, membership and per-recipient splintering (reference 10).

Constructor for the gateway's config loader::

    MailPolicy(name="sales_team",
               senders=Membership(),                            # any sender
               recipients=Membership(include=("jim@", "john@")),
               combine="all",                                   # or "any"
               content_filters=("cf_a", "cf_b"))                # None: every filter of the list
    PolicyTable(policies=(...), default=MailPolicy("Default"))

``load_policies(toml_dict)`` reads a ``--policies`` file or the policies of a suite file:
``[[incoming_policies]]`` and ``[[outgoing_policies]]``, spelt as in gateway.toml. The older
``incoming`` / ``outgoing`` still load, with a warning naming the current spelling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from attrs import field, frozen

from runtime.config.schema import unknown_keys

LdapCheck = Callable[[str, str], bool]  # (address, "server.ldapgroup: name") -> member?


def entry_matches(entry: str, address: str, ldap: LdapCheck | None = None) -> bool:
    """One membership entry: ``joe@example.com``, ``jim@``, ``@example.com``, ``@.example.com``."""
    e = entry.strip().lower()
    a = address.strip().lower()
    if ".ldapgroup:" in e:
        return ldap(address, entry) if ldap is not None else False
    local, _, domain = a.rpartition("@")
    if e.startswith("@."):
        return domain == e[2:] or domain.endswith(e[1:])
    if e.startswith("@"):
        return domain == e[1:]
    if e.endswith("@"):
        return local == e[:-1]
    return a == e


@frozen
class Membership:
    """Include list (empty = any) and exclude list ("are Not"); both must hold."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @property
    def is_any(self) -> bool:
        return not self.include and not self.exclude

    def matches(self, address: str, ldap: LdapCheck | None = None) -> bool:
        if self.include and not any(entry_matches(e, address, ldap) for e in self.include):
            return False
        return not any(entry_matches(e, address, ldap) for e in self.exclude)


@frozen
class MailPolicy:
    name: str
    senders: Membership = Membership()
    recipients: Membership = Membership()
    combine: Literal["all", "any"] = "all"
    content_filters: tuple[str, ...] | None = None

    def matches(self, sender: str, recipient: str, ldap: LdapCheck | None = None) -> bool:
        s_any, r_any = self.senders.is_any, self.recipients.is_any
        s = self.senders.matches(sender, ldap)
        r = self.recipients.matches(recipient, ldap)
        if self.combine == "any" and not (s_any and r_any):
            # "one or more conditions match": a part left at Any does not count as a match
            return (s and not s_any) or (r and not r_any)
        return s and r


@frozen
class PolicyTable:
    policies: tuple[MailPolicy, ...] = ()
    default: MailPolicy = MailPolicy("Default")

    def splinter(self, sender: str, recipients: Sequence[str],
                 ldap: LdapCheck | None = None) -> dict[str, list[str]]:
        """policy name -> recipients, first match wins top-down (reference 10.3)."""
        out: dict[str, list[str]] = {}
        for rcpt in recipients:
            for policy in (*self.policies, self.default):
                if policy.matches(sender, rcpt, ldap):
                    out.setdefault(policy.name, []).append(rcpt)
                    break
        return out

    def get(self, name: str) -> MailPolicy:
        return next((p for p in self.policies if p.name == name), self.default)


@frozen
class Policies:
    incoming: PolicyTable = PolicyTable()
    outgoing: PolicyTable = PolicyTable()
    options: Mapping[str, Any] = field(factory=dict)

    def table(self, direction: str) -> PolicyTable:
        return self.outgoing if direction == "outgoing" else self.incoming


class PolicyError(ValueError):
    pass


POLICY_KEYS = ("name", "senders", "recipients", "combine", "content_filters")
MEMBERSHIP_KEYS = ("include", "exclude")
# The file's keys: the gateway.toml spelling, then the older one (still read, with a warning).
TABLE_KEYS = {"incoming_policies": "incoming", "outgoing_policies": "outgoing"}


def _membership(spec: Any, where: str) -> Membership:
    if spec in (None, "any", "*"):
        return Membership()
    if isinstance(spec, list):
        return Membership(tuple(str(s) for s in spec))
    if isinstance(spec, dict):
        bad = unknown_keys(spec, MEMBERSHIP_KEYS, where)
        if bad:
            raise PolicyError("\n".join(bad))
        return Membership(tuple(str(s) for s in spec.get("include", ())),
                          tuple(str(s) for s in spec.get("exclude", ())))
    raise PolicyError(f"{where}: expected \"any\", a list of entries or {{include, exclude}}")


def _table(items: Any, where: str) -> PolicyTable:
    if not isinstance(items, list):
        raise PolicyError(f"{where}: expected a list of [[{where}]] tables")
    pols: list[MailPolicy] = []
    default = MailPolicy("Default")
    for i, it in enumerate(items):
        w = f"{where}[{i}]"
        if not isinstance(it, dict) or "name" not in it:
            raise PolicyError(f"{w}: every policy needs a name")
        bad = unknown_keys(it, POLICY_KEYS, w)
        if bad:
            raise PolicyError("\n".join(bad))
        cfs = it.get("content_filters")
        combine = it.get("combine", "all")
        if combine not in ("all", "any"):
            raise PolicyError(f"{w}: combine must be \"all\" or \"any\"")
        pol = MailPolicy(str(it["name"]), _membership(it.get("senders"), f"{w}.senders"),
                         _membership(it.get("recipients"), f"{w}.recipients"), combine,
                         None if cfs is None else tuple(str(c) for c in cfs))
        if pol.name == "Default":
            default = pol
        else:
            pols.append(pol)
    return PolicyTable(tuple(pols), default)


def load_policies(data: Mapping[str, Any], *, where: str = "",
                  warn: Callable[[str], None] | None = None) -> Policies:
    """``{"incoming_policies": [{name, senders, recipients, combine, content_filters}],
    "outgoing_policies": [...]}``; ``where`` prefixes every message (the file, the table).
    Every unknown key is a `PolicyError` naming the nearest known one."""
    prefix = f"{where}: " if where and not where.endswith(":") else where
    bad = unknown_keys(dict(data), [*TABLE_KEYS, *TABLE_KEYS.values()], "")
    if bad:
        raise PolicyError("\n".join(prefix + b for b in bad))
    tables: dict[str, PolicyTable] = {}
    for key, old in TABLE_KEYS.items():
        if key in data and old in data:
            raise PolicyError(f"{prefix}{old}: also given as {key}; keep {key}")
        if old in data and warn is not None:
            warn(f"{prefix}{old}: deprecated spelling; write {key} (as in gateway.toml)")
        try:
            tables[key] = _table(data.get(key, data.get(old, [])), old if old in data else key)
        except PolicyError as exc:
            raise PolicyError(prefix + str(exc).replace("\n", "\n" + prefix)) from None
    return Policies(tables["incoming_policies"], tables["outgoing_policies"])
