"""Partners who send signed mail, for bench/gateway.py's inbound run.

Each partner has what a real one has: a root CA, an issuing CA below it, a user certificate
(RSA-2048) for S/MIME signing, and a CRL from each CA (listing some revoked serials). The
gateway trusts the roots and holds the CRLs in its CRL directory, so every message has its
path validated with revocation checked for each certificate of it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC)
BODY_LINE = "Please find the figures of this quarter below; the rest follows by courier.\n"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _cert(name: str, key: rsa.RSAPrivateKey, issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None,
          *, ca: bool, email: str = "") -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_key = issuer[1] if issuer else key
    b = (x509.CertificateBuilder()
         .subject_name(subject)
         .issuer_name(issuer[0].subject if issuer else subject)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(NOW - dt.timedelta(days=30))
         .not_valid_after(NOW + dt.timedelta(days=365))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
             signer_key.public_key()), False))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                          False), critical=True)
    else:
        b = (b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                           False), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
             .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), False))
    return b.sign(signer_key, hashes.SHA256())


def _crl(ca: x509.Certificate, key: rsa.RSAPrivateKey, revoked: int) -> bytes:
    b = (x509.CertificateRevocationListBuilder()
         .issuer_name(ca.subject)
         .last_update(NOW - dt.timedelta(hours=1))
         .next_update(NOW + dt.timedelta(days=7))
         .add_extension(x509.CRLNumber(1), False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False))
    for _ in range(revoked):  # other users of the partner, who left
        b = b.add_revoked_certificate(x509.RevokedCertificateBuilder()
                                      .serial_number(x509.random_serial_number())
                                      .revocation_date(NOW - dt.timedelta(days=2)).build())
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def write_partners(folder: Path, count: int = 3, size: int = 4096) -> list[Path]:
    """`count` partners: their roots in folder/anchors, their CAs' CRLs in folder/crls, and
    for each a signed message of about `size` bytes of content; the message files, with LF
    line ends as smtp-source -F wants them (it sends each line with CRLF)."""
    from asn1crypto import x509 as asn1_x509

    from smime import sign

    (folder / "anchors").mkdir(parents=True)
    (folder / "crls").mkdir()
    messages = []
    for n in range(1, count + 1):
        domain = f"partner{n}.example.net"
        root_key, ca_key, user_key = _key(), _key(), _key()
        root = _cert(f"{domain} Root CA", root_key, None, ca=True)
        ca = _cert(f"{domain} Issuing CA", ca_key, (root, root_key), ca=True)
        sender = f"sales@{domain}"
        user = _cert(sender, user_key, (ca, ca_key), ca=False, email=sender)
        (folder / "anchors" / f"{domain}.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
        (folder / "crls" / f"{domain}-root.crl").write_bytes(_crl(root, root_key, 2))
        (folder / "crls" / f"{domain}-ca.crl").write_bytes(_crl(ca, ca_key, 20))
        body = BODY_LINE * (size // len(BODY_LINE) + 1)
        plain = (f"From: <{sender}>\r\nTo: <b@example.org>\r\nSubject: figures from {domain}\r\n"
                 f"Date: {NOW:%a, %d %b %Y %H:%M:%S +0000}\r\nMessage-ID: <q{n}@{domain}>\r\n"
                 f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                 + body.replace("\n", "\r\n")).encode("ascii")
        der = [asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))
               for c in (user, ca)]
        signed = sign(plain, user_key, der[0], der[1:])
        path = folder / f"{domain}.eml"
        path.write_bytes(signed.replace(b"\r\n", b"\n"))
        messages.append(path)
    return messages
