"""Sign recipes: `sign` for whole RFC 5322 messages, `sign_content` for the composer."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from asn1crypto import x509

from smime import _cms_signed as cs
from smime import mime

_MICALG = {"sha256": "sha-256", "sha384": "sha-384", "sha512": "sha-512"}


def sign_content(
    content: bytes,
    key: cs.PrivateKey,
    cert: x509.Certificate | bytes,
    chain: Sequence[x509.Certificate | bytes] = (),
    *,
    detached: bool = True,
    digest: str = "sha256",
    rsa_padding: str = "pkcs1v15",
    capabilities: Sequence[str] = cs.DEFAULT_CAPABILITIES,
    now: dt.datetime | None = None,
) -> bytes:
    """Return DER SignedData over exactly `content` (already canonical)."""
    return cs.build_signed(
        content, key, cert, chain, detached=detached, digest_name=digest,
        rsa_padding=rsa_padding, capabilities=capabilities, signing_time=now,
    )


def sign(
    message: bytes,
    key: cs.PrivateKey,
    cert: x509.Certificate | bytes,
    chain: Sequence[x509.Certificate | bytes] = (),
    *,
    detached: bool = True,
    digest: str = "sha256",
    rsa_padding: str = "pkcs1v15",
    capabilities: Sequence[str] = cs.DEFAULT_CAPABILITIES,
    now: dt.datetime | None = None,
) -> bytes:
    """Sign a whole message: routing headers stay outside, content headers move inside."""
    # Parts and views rather than an intermediate inner entity: a 50 MB message must not
    # cost many times its size (issue 6).
    outer, fields, body = mime.split_message_parts(message)
    entity = mime.canonical_entity(fields, body)
    del body
    der = sign_content(entity, key, cert, chain, detached=detached, digest=digest,
                       rsa_padding=rsa_padding, capabilities=capabilities, now=now)
    if detached:
        return mime.build_detached(outer, entity, der, _MICALG[digest])
    return mime.build_opaque(outer, der)
