"""Outbound TLS name checks (verify/secure): which certificate names satisfy a policy's match."""

from __future__ import annotations

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
])
def test_names(names: tuple[str, ...], wanted: tuple[str, ...], ok: bool) -> None:
    assert (check_names(cert(*names), wanted) is None) is ok


def test_common_name_only_without_dns_names() -> None:
    assert certificate_names(cert(cn="MX.Old.Example")) == ["mx.old.example"]
    assert certificate_names(cert("a.example", cn="b.example")) == ["a.example"]
    assert check_names(cert(cn="mx.old.example"), ("mx.old.example",)) is None
    why = check_names(cert("a.example"), ("b.example",))
    assert why == "certificate names a.example do not match b.example"
