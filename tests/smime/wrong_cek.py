"""Envelopes whose encrypted key opens to a wrong content-encryption key that CBC padding
cannot catch: what a corrupted private key or a tampered encrypted key gives about once in
256 decryptions, made on purpose so a test sees it every time."""

from __future__ import annotations

import random

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from smime.envelope import encrypt_content


def _pads_cleanly(cek: bytes, iv: bytes, ciphertext: bytes) -> bool:
    dec = Cipher(algorithms.AES(cek), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        unpadder.update(dec.update(ciphertext) + dec.finalize())
        unpadder.finalize()
    except ValueError:
        return False
    return True


def wrong_cek_envelope(content: bytes, cert: x509.Certificate, seed: int = 0) -> bytes:
    """An AES-128-CBC envelope for `cert` whose encrypted key holds a wrong CEK under which
    the ciphertext still unpads cleanly (so it decrypts to random bytes of valid padding)."""
    der = encrypt_content(content, [cert], cipher="aes128-cbc")
    body = cms.ContentInfo.load(der)["content"]
    eci = body["encrypted_content_info"]
    iv = eci["content_encryption_algorithm"]["parameters"].native
    ciphertext = eci["encrypted_content"].native
    rnd = random.Random(seed)
    cek = rnd.randbytes(16)
    while not _pads_cleanly(cek, iv, ciphertext):
        cek = rnd.randbytes(16)
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    old = body["recipient_infos"][0].chosen["encrypted_key"].native
    return der.replace(old, public.encrypt(cek, asym_padding.PKCS1v15()))


def corrupted(key: rsa.RSAPrivateKey) -> rsa.RSAPrivateKey:
    """The key with its private exponents damaged (OpenSSL falls back from a bad CRT result to
    d, so both): it loads (validation skipped, as a damaged
    key file read without checks would) and decrypts to garbage."""
    n = key.private_numbers()
    return rsa.RSAPrivateNumbers(n.p, n.q, n.d ^ 2, n.dmp1 ^ 2, n.dmq1, n.iqmp,
                                 n.public_numbers).private_key(unsafe_skip_rsa_key_validation=True)
