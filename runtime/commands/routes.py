"""`filterlang routes -c gateway.toml test ADDRESS...`: which route each recipient takes.

For each address: the [routes] entry that matched (or the [delivery] target the gateway falls
back to), the next hops in the order the queue tries them (MX records looked up now, through
[dns], for an `mx` route), and the [tls.outbound] policy delivery applies (with the domain's
MTA-STS policy, fetched now, where one applies). A filter's
alt-mailhost, which comes first, depends on the message and is not shown here; `filterlang
test -c` shows it per message.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from runtime.commands._config import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    accept_after_action,
    add_config_argument,
    print_json,
    required_config,
)
from runtime.config.config import GatewayConfig, TlsPolicy
from runtime.mta.queue import Router, hop_text
from runtime.mta.supervisor import mta_sts_for, mx_resolver
from runtime.mta.transport import DnsResolver, MxFailure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser, " whose [routes] to read")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    test = sub.add_parser("test", help="print the route, next hops and TLS policy per address")
    test.add_argument("addresses", nargs="+", metavar="ADDRESS")
    accept_after_action(sub)


def _tls(policy: TlsPolicy) -> dict[str, Any]:
    return {"level": policy.level, "match": list(policy.match),
            "min_version": policy.min_version,
            "ca_file": str(policy.ca_file) if policy.ca_file else None}


def _tls_text(tls: dict[str, Any] | None) -> str:
    if tls is None:
        return "not used (local delivery)"
    extra = [f"names {', '.join(tls['match'])}"] if tls["match"] else []
    if tls["ca_file"]:
        extra.append(f"CAs {tls['ca_file']}")
    if tls["level"] != "none":
        extra.append(f"{tls['min_version']} or later")
    return tls["level"] + (f" ({'; '.join(extra)})" if extra else "")


async def _choose(config: GatewayConfig, addresses: list[str]) -> list[dict[str, Any]]:
    resolver: DnsResolver | None = (mx_resolver(config) if config.delivery.mx
                                    or config.routes.uses_mx else None)
    router = Router(config.delivery, resolver, config.routes)
    sts = mta_sts_for(config)
    rows = []
    for address in addresses:
        domain = address.rpartition("@")[2].lower().rstrip(".")
        choice = router.choose(address)
        source = "routes" if choice.route in config.routes.entries else "delivery"
        row: dict[str, Any] = {"address": address, "route": choice.route, "source": source,
                               "mx": choice.dests is None, "problem": None,
                               "tls": _tls(config.tls_outbound.for_domain(domain))}
        hops: list[str] = []
        if choice.dests is not None:
            hops = [hop_text(d) for d in choice.dests]
        elif resolver is not None:
            try:
                hops = [hop_text(d) for d in await resolver.mx_async(domain)]
            except MxFailure as exc:
                row["problem"] = f"{exc.result.code} {exc.result.text}"
        if not hops and row["problem"] is None:
            row["problem"] = "no next hop"
        row["mta_sts"] = None
        if hops and choice.dests is None and sts is not None \
                and not config.tls_outbound.has_entry(domain):
            found = await sts.policy(domain)
            if found is not None:
                row["mta_sts"] = {"mode": found.mode, "id": found.id, "mx": list(found.mx)}
                if found.mode == "enforce":  # as the queue applies it
                    base = config.tls_outbound.default
                    row["tls"] = _tls(TlsPolicy(level="verify", match=found.match,
                                                min_version=base.min_version,
                                                ca_file=base.ca_file))
            elif domain in sts.problems:
                row["mta_sts"] = {"problem": sts.problems[domain]}
        row["next_hops"] = hops
        if hops and all(h.startswith("maildir") for h in hops):
            row["tls"] = None  # local delivery: no SMTP session
        rows.append(row)
    return rows


def _text(row: dict[str, Any]) -> str:
    route = f'[routes] "{row["route"]}"' if row["source"] == "routes" else row["route"]
    hops = ", ".join(row["next_hops"])
    if row["mx"]:
        hops = f"MX of {row['address'].rpartition('@')[2]}: {hops or row['problem']}"
    elif row["problem"]:
        hops = row["problem"]
    text = (f"{row['address']}\n  route      {route}\n  next hops  {hops}\n"
            f"  tls        {_tls_text(row['tls'])}")
    sts = row["mta_sts"]
    if sts is not None:
        text += "\n  mta-sts    " + (
            f"policy not fetched: {sts['problem']}" if "problem" in sts else
            f"{sts['mode']} (id {sts['id']}; mx {', '.join(sts['mx'])})"
            + ("" if sts["mode"] == "enforce" else ": not applied"))
    return text


def run(args: argparse.Namespace) -> int:
    bad = [a for a in args.addresses if a.count("@") != 1 or not a.rpartition("@")[2].strip(".")]
    if bad:
        print(f"filterlang routes test: {bad[0]!r} is not an address like user@example.com",
              file=sys.stderr)
        return EXIT_USAGE
    config = required_config(args, "routes")
    if config is None:
        return EXIT_USAGE
    rows = asyncio.run(_choose(config, list(args.addresses)))
    if args.json:
        print_json(rows)
    else:
        print("\n".join(_text(r) for r in rows))
    return EXIT_PROBLEMS if any(r["problem"] for r in rows) else EXIT_OK
