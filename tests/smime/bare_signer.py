"""A signed message whose SignerInfo has no signed attributes (RFC 5652 5.3 allows it): the
signature is over the raw content, nothing binds content type, time or certificate."""

from __future__ import annotations

from asn1crypto import cms
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from smime import sign_content
from smime.mime import build_detached, canonicalise, split_message
from tests.smime.pki import NOW, Issued, Pki


def sign_without_attributes(message: bytes, pki: Pki, user: Issued) -> bytes:
    outer, entity = split_message(message)
    entity = canonicalise(entity)
    assert isinstance(user.key, rsa.RSAPrivateKey)
    der = sign_content(entity, user.key, user.asn1, [pki.inter.asn1], now=NOW)
    info = cms.ContentInfo.load(der)
    sd = info["content"].copy()
    si = sd["signer_infos"][0]
    bare = cms.SignerInfo({
        "version": si["version"].native,
        "sid": si["sid"],
        "digest_algorithm": {"algorithm": "sha256"},
        "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
        "signature": user.key.sign(entity, padding.PKCS1v15(), hashes.SHA256()),
    })
    sd["signer_infos"] = [bare]
    der = cms.ContentInfo({"content_type": "signed_data", "content": sd}).dump(force=True)
    return build_detached(outer, entity, der, "sha-256")
