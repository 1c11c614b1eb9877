"""Outbound TLS name checks (verify/secure): which certificate names satisfy a policy's match."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runtime.mta.smtp_client import certificate_names, check_names


def cert(*dns: str, cn: str = "ignored.example") -> dict[str, Any]:
    return {"subject": ((("commonName", cn),),),
            "subjectAltName": tuple(("DNS", d) for d in dns)}


@pytest.mark.parametrize("names,wanted,ok", [
    (("mx.partner.example",), ("mx.partner.example",), True),
    (("MX.Partner.Example",), ("mx.partner.example.",), True),
    (("mx.partner.example",), ("partner.example",), False),
    (("*.partner.example",), ("mx.partner.example",), True),
    (("*.partner.example",), ("a.mx.partner.example",), False),  # one label only
    (("*.partner.example",), ("partner.example",), False),
    (("mx.partner.example",), (".partner.example",), True),  # any name below it
    (("partner.example",), (".partner.example",), False),
    (("mx.evilpartner.example",), (".partner.example",), False),
    (("a.example", "mx.partner.example"), ("other.example", "mx.partner.example"), True),
    # MTA-STS mx patterns (RFC 8461 4.1): "*.x" is one label below x.
    (("mx.partner.example",), ("*.partner.example",), True),
    (("a.mx.partner.example",), ("*.partner.example",), False),
    (("partner.example",), ("*.partner.example",), False),
    (("*.partner.example",), ("*.partner.example",), True),
])
def test_names(names: tuple[str, ...], wanted: tuple[str, ...], ok: bool) -> None:
    assert (check_names(cert(*names), wanted) is None) is ok


def test_common_name_only_without_dns_names() -> None:
    assert certificate_names(cert(cn="MX.Old.Example")) == ["mx.old.example"]
    assert certificate_names(cert("a.example", cn="b.example")) == ["a.example"]
    assert check_names(cert(cn="mx.old.example"), ("mx.old.example",)) is None
    why = check_names(cert("a.example"), ("b.example",))
    assert why == "certificate names a.example do not match b.example"


def test_recipients_are_grouped_by_policy_and_by_domain_under_default_secure(tmp_path: Path) -> None:
    """One copy per TLS policy; under `secure` without `match` one per domain too, since the
    certificate is checked against the recipient's domain."""
    from runtime.config.config import Delivery, OutboundTls, TlsPolicy
    from runtime.mta.queue import QueueRunner
    from runtime.mta.spool import Envelope, Spool
    from runtime.mta.transport import MemoryTransport

    secure, verify = TlsPolicy(level="secure"), TlsPolicy(level="verify", match=("mx.c.example",))
    tls = OutboundTls(secure, {"c.example": verify, "d.example": verify})
    runner = QueueRunner(Spool(tmp_path / "spool"), Delivery(relay="127.0.0.1:25"),
                         MemoryTransport(), tls=tls)
    env = Envelope("s@example.org", ("a@x.example", "b@y.example", "c@x.example", "c@c.example",
                                     "d@d.example"))
    groups = {(policy.level, own): rcpts for (_, policy, own, _), rcpts in runner._routes(env).items()}
    assert groups == {("secure", "x.example"): ["a@x.example", "c@x.example"],
                      ("secure", "y.example"): ["b@y.example"],
                      ("verify", ""): ["c@c.example", "d@d.example"]}


@pytest.mark.parametrize("level,raise_to,ca,want_level,want_ca", [
    ("may", "encrypt", None, "encrypt", Path("d.pem")),
    ("none", "encrypt", None, "encrypt", None),
    ("may", "verify", Path("p.pem"), "verify", Path("p.pem")),
    ("encrypt", "verify", None, "verify", Path("d.pem")),  # the destination's ca_file
    ("verify", "encrypt", None, "verify", Path("d.pem")),  # never lowered
    ("secure", "verify", Path("p.pem"), "secure", Path("d.pem")),  # a stronger one stays
])
def test_rule_1_raises_the_destinations_policy(level: str, raise_to: str, ca: Path | None,
                                               want_level: str, want_ca: Path | None) -> None:
    """Rule 1 of an encryption profile ("TLS first") asks the destination's [tls.outbound]
    policy raised to at least `encrypt` (or `verify` with the profile's tls_verify)."""
    from runtime.config.config import TlsPolicy

    base = TlsPolicy(level=level, min_version="TLSv1.3",
                     ca_file=Path("d.pem") if level != "none" else None)
    got = base.at_least(raise_to, ca)
    assert (got.level, got.min_version) == (want_level, "TLSv1.3")
    assert got.ca_file == (want_ca if level != "none" else ca)
