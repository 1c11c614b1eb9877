"""Envelope and connection rules (reference 6.3)."""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from filterlang.compile import CRule
from runtime.engine.addresses import address_list
from runtime.engine.context import MessageContext
from runtime.engine.rules.common import (
    RuleError,
    RuleResult,
    arg,
    compare_name,
    compare_num,
    compare_regex,
    operand,
    show,
)
from runtime.engine.services import need


def mail_from(ctx: MessageContext, t: CRule) -> RuleResult:
    return compare_regex(t, [ctx.envelope.mail_from], "mail-from")


def rcpt_to(ctx: MessageContext, t: CRule) -> RuleResult:
    return compare_regex(t, ctx.envelope.rcpt_addresses, "rcpt-to")


def rcpt_count(ctx: MessageContext, t: CRule) -> RuleResult:
    return compare_num(t, len(ctx.envelope.recipients), "rcpt-count")


def _ip_in(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, spec: Any) -> bool:
    """One part of an IP spec: a network (compiled), or the text forms of reference 6.3 (the
    checker refuses anything else, host names included: F305)."""
    if isinstance(spec, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return ip.version == spec.version and ip in spec
    spec = str(spec).strip()
    if not spec:
        return False
    if spec.endswith("."):
        return str(ip).startswith(spec)
    if "-" in spec:
        base, _, hi = spec.rpartition("-")
        head, _, lo = base.rpartition(".")
        octets = str(ip).split(".")
        return (len(octets) == 4 and ".".join(octets[:3]) == head and lo.isdigit() and hi.isdigit()
                and int(lo) <= int(octets[3]) <= int(hi))
    return False


@functools.lru_cache(maxsize=1024)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    # one connection is tested by many remote-ip rules: parse its address once
    return ipaddress.ip_address(text)


def ip_specs(t: CRule) -> tuple[Any, ...]:
    """The parts of a ``remote-ip`` operand (one spec or a list of them)."""
    return operand(t) if isinstance(operand(t), tuple) else (operand(t),)


def remote_ip_in(ctx: MessageContext, specs: tuple[Any, ...]) -> bool:
    """Whether the connecting address is in one of ``specs`` (shared with `rules.values`)."""
    try:
        ip = _address(ctx.connection.remote_ip)
    except ValueError as exc:
        raise RuleError(f"remote-ip: {exc}") from None
    return any(_ip_in(ip, s) for s in specs)


def remote_ip(ctx: MessageContext, t: CRule) -> RuleResult:
    specs = ip_specs(t)
    hit = remote_ip_in(ctx, specs)
    ok = hit if t.comparator != "!=" else not hit
    return RuleResult(ok, f"remote-ip {ctx.connection.remote_ip} {'in' if hit else 'not in'} {show(specs)}")


def recv_listener(ctx: MessageContext, t: CRule) -> RuleResult:
    return compare_name(t, ctx.connection.listener, "recv-listener")


def recv_int(ctx: MessageContext, t: CRule) -> RuleResult:
    return compare_name(t, ctx.connection.interface, "recv-int")


def sendergroup(ctx: MessageContext, t: CRule) -> RuleResult:
    return compare_regex(t, [ctx.connection.sender_group], "sendergroup")


def _strip_sieve(addr: str, sieve: str | None) -> str:
    if not sieve:
        return addr
    local, at, domain = addr.partition("@")
    if sieve in local:
        local = local[: local.rfind(sieve)]
    return local + at + domain


def smtp_auth_id_matches(ctx: MessageContext, t: CRule) -> RuleResult:
    target = str(arg(t, 0, "")).lower()
    sieve = arg(t, 1)
    auth = ctx.connection.auth_user.lower()
    if target == "*none":
        return RuleResult(not auth, "session not authenticated" if not auth else f"authenticated as {auth}")
    if not auth:
        return RuleResult(False, "session not authenticated")
    if target == "*any":
        return RuleResult(True, f"authenticated as {auth}")
    if target == "*envelopefrom":
        ids = [ctx.envelope.mail_from]
    elif target == "*fromaddress":
        ids = [a for _, a in address_list(ctx.header_values("From"))]
    else:
        ids = [a for a in ctx.header_values("Sender")]
    for ident in ids:
        ident = _strip_sieve(ident.strip().lower(), sieve)
        if "@" in auth:
            if ident == auth:
                return RuleResult(True, f"{ident} matches {auth}")
        elif ident.partition("@")[0] == auth:
            return RuleResult(True, f"{ident} matches {auth}")
    return RuleResult(False, f"no identity matches {auth}")


def _group_note(ldap: object, answers: list[tuple[str, bool]], group: str) -> str:
    """What the directory answered, for the trace: `ldap corp: a@x in engineers; ...`."""
    query = getattr(ldap, "query", "")
    said = "; ".join(f"{a or '<>'} {'in' if hit else 'not in'} {group}" for a, hit in answers)
    return f"ldap {query}: {said}" if query else f"LDAP: {said}"


def mail_from_group(ctx: MessageContext, t: CRule) -> RuleResult:
    ldap = need(ctx.services, "ldap")
    group = str(operand(t))
    hit = ldap.in_group(ctx.envelope.mail_from, group)  # type: ignore[attr-defined]
    return RuleResult(hit if t.comparator != "!=" else not hit,
                      _group_note(ldap, [(ctx.envelope.mail_from, hit)], group))


def rcpt_to_group(ctx: MessageContext, t: CRule) -> RuleResult:
    ldap = need(ctx.services, "ldap")
    group = str(operand(t))
    rcpts = ctx.envelope.rcpt_addresses
    hits = [ldap.in_group(r, group) for r in rcpts]  # type: ignore[attr-defined]
    ok = any(hits) if t.comparator != "!=" else not all(hits)
    return RuleResult(ok, _group_note(ldap, list(zip(rcpts, hits, strict=True)), group))


def reputation(ctx: MessageContext, t: CRule) -> RuleResult:
    score = need(ctx.services, "reputation").score(ctx.connection.remote_ip)  # type: ignore[attr-defined]
    return compare_num(t, score, "reputation")


def no_reputation(ctx: MessageContext, t: CRule) -> RuleResult:
    score = need(ctx.services, "reputation").score(ctx.connection.remote_ip)  # type: ignore[attr-defined]
    return RuleResult(score is None, f"reputation = {score}")


def dnslist(ctx: MessageContext, t: CRule) -> RuleResult:
    provider = need(ctx.services, "dnslist")
    zone = str(arg(t, 0))
    answer = provider.lookup(zone, ctx.connection.remote_ip)  # type: ignore[attr-defined]
    # A URI list names the URL host it found listed (runtime.engine.providers.dnslist).
    name = getattr(provider, "listed", {}).get(zone.strip(".").lower())
    what = f"dnslist answer for {name}" if name else "dnslist answer"
    if t.comparator is None:
        return RuleResult(answer is not None, f"{what} {answer}")
    if answer is None:
        return RuleResult(False, "not listed")
    return compare_name(t, answer, what)


def _result_list(value: object) -> set[str]:
    """The results an SPF/DMARC operand lists: the compiler gives a tuple ('Fail, SoftFail'
    split at the commas); a string is split here the same way."""
    items = value if isinstance(value, tuple | list) else str(value).split(",")
    return {str(w).strip().lower() for w in items}


def spf_status(ctx: MessageContext, t: CRule) -> RuleResult:
    result = need(ctx.services, "auth").spf(str(arg(t, 0, "")))  # type: ignore[attr-defined]
    wanted = _result_list(operand(t))
    hit = result.lower() in wanted
    return RuleResult(hit if t.comparator != "!=" else not hit, f"SPF result {result}")


def spf_passed(ctx: MessageContext, t: CRule) -> RuleResult:
    result = need(ctx.services, "auth").spf("")  # type: ignore[attr-defined]
    return RuleResult(result.lower() == "pass", f"SPF result {result}")


def dkim_authentication(ctx: MessageContext, t: CRule) -> RuleResult:
    result = need(ctx.services, "auth").dkim()  # type: ignore[attr-defined]
    return compare_name(t, result.lower(), "DKIM result")


def dmarc_status(ctx: MessageContext, t: CRule) -> RuleResult:
    result = need(ctx.services, "auth").dmarc()  # type: ignore[attr-defined]
    wanted = _result_list(operand(t))
    hit = result.lower() in wanted
    return RuleResult(hit if t.comparator != "!=" else not hit, f"DMARC result {result}")


def dmarc_policy(ctx: MessageContext, t: CRule) -> RuleResult:
    policy = need(ctx.services, "auth").dmarc_policy()  # type: ignore[attr-defined]
    return compare_name(t, policy.lower(), "DMARC policy")


def workqueue_count(ctx: MessageContext, t: CRule) -> RuleResult:
    counters = need(ctx.services, "counters")
    return compare_num(t, counters.get("workqueue", 0), "workqueue-count")  # type: ignore[attr-defined]
