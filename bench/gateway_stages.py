"""Pipeline stages for bench/gateway.py until the config-driven stages (branch `integ`) land.

`serve_with_stages(config)` starts `filterlang serve` with two stages plugged in through the
`make_runner(stages=...)` hook:

- message_filters: the 50 realistic message filters of bench/evaluate.py (envelope, header,
  body and attachment rules), evaluated with the runtime; header edits are applied to the
  message, matches are counted. Final actions are recorded but not executed, so every message
  still reaches the sink and the throughput figure covers all of them.
- smime_outbound: an RSA-2048 signature (detached, SHA-256) over every message, like a
  sending profile in mode "sign".

The key and certificate are created once in the supervisor, before the workers fork.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from evaluate import BODY_ATTACH, ENVELOPE_HEADER, filter_source  # bench/evaluate.py

from filterlang import parse
from filterlang.ast import Filter
from runtime import gateway
from runtime.context import Connection, Envelope, MessageContext
from runtime.engine import run_filters
from runtime.pipeline import InFlight
from smime import signing
from smime.certs import CertificateSpec, create_self_signed


def bench_filters() -> list[Filter]:
    source = filter_source(ENVELOPE_HEADER + BODY_ATTACH)
    parsed, _ = parse(source, "bench-50")
    assert parsed is not None and len(parsed.filters) == 50
    return list(parsed.filters)


class FilterStage:
    name = "message_filters"

    def __init__(self, filters: list[Filter]) -> None:
        self.filters = filters

    def process(self, msg: InFlight) -> None:
        env = Envelope.simple(msg.envelope.mail_from, list(msg.envelope.rcpt_tos))
        ctx = MessageContext(msg.data, env, Connection(remote_ip=msg.envelope.peer or "127.0.0.1",
                                                       listener="Inbound"))
        result = run_filters(self.filters, ctx)
        for f in result.filters:
            if f.matched:
                msg.events.append(("filter_hit", f.name))
                msg.trace.append(f"filter {f.name} matched")
        msg.data = ctx.as_bytes()


class SignStage:
    name = "smime_outbound"

    def __init__(self) -> None:
        created = create_self_signed(CertificateSpec(
            common_name="bench signer", san_emails=("a@example.com",), key_type="rsa-2048",
            usage="signing"))
        assert isinstance(created.key, rsa.RSAPrivateKey) and created.key.key_size == 2048
        self.key = created.key
        # The signer takes asn1crypto's certificate; DER is the bridge from cryptography's.
        self.cert = created.certificate.public_bytes(Encoding.DER)

    def process(self, msg: InFlight) -> None:
        msg.data = signing.sign(msg.data, self.key, self.cert)
        msg.trace.append("profile bench: signed rsa-2048")


def serve_with_stages(config: Path) -> int:
    stages: dict[str, Any] = {"message_filters": FilterStage(bench_filters()),
                              "smime_outbound": SignStage()}
    original = gateway.make_runner

    def make_runner(*args: Any, **kwargs: Any) -> Any:
        # The workers now pass the config-driven stages; the bench's two replace those slots.
        kwargs["stages"] = {**(kwargs.get("stages") or {}), **stages}
        return original(*args, **kwargs)

    gateway.make_runner = make_runner  # the workers fork from here
    return gateway.serve(config)
