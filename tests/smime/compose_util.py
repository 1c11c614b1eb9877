"""Shared by the composer tests: a signer per key kind, recipients, one test message."""

from __future__ import annotations

import functools

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from keys_util import recipient as _recipient
from pki import Issued, Pki, issue, make_pki

from smime import Signer
from smime._keys import PrivateKey

MSG = (
    b"From: alice@example.com\r\nTo: bob@example.test\r\nSubject: quarterly figures\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    b"Revenue is up.\r\nCaf\xc3\xa9 budget unchanged.\r\n"
)
CIPHERS = ("aes128-cbc", "aes256-cbc", "aes128-gcm", "aes256-gcm")
# Signer key kind -> recipient key kind (RSA-3072 and RSA-PSS signers encrypt to RSA).
KINDS = {"rsa2048": "rsa", "rsa3072": "rsa", "rsa-pss": "rsa", "p256": "p256", "p384": "p384"}


def recipient(kind: str, name: str = "bob") -> tuple[PrivateKey, x509.Certificate]:
    key, cert = _recipient(kind, name)
    return key, cert  # type: ignore[return-value]


@functools.cache
def ca() -> Pki:
    return make_pki()


@functools.cache
def user(kind: str, email: str = "alice@example.com") -> Issued:  # cached: call positionally
    root = ca()
    if kind == "rsa3072":
        key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        return issue(email, root.inter, emails=[email], key=key)
    return root.user(email, kind={"rsa2048": "rsa", "rsa-pss": "rsa"}.get(kind, kind))


def signer(kind: str) -> Signer:
    who = user(kind)
    return Signer(who.key, who.cert, (ca().inter.cert,),
                  rsa_padding="pss" if kind == "rsa-pss" else "pkcs1v15")
