"""The test zones the authentication tests publish through NSD (tests/e2e/nsd.py).

Domain                 SPF                        DKIM keys (selector)         DMARC
pass.auth.test         ip4:127.0.0.1 -all: pass   good, revoked (p=), wrong    p=none
fail.auth.test         ip4:192.0.2.1 -all: fail   good                         p=reject
soft.auth.test         ~all: softfail             -                            p=quarantine
perm.auth.test         a syntax error: permerror  -                            -
temp.auth.test         include of a SERVFAIL zone -                            -
helo.auth.test         ip4:127.0.0.1 -all (HELO)  -                            -
elsewhere.test         ip4:127.0.0.1 -all: pass (another organisational domain)
bl.test                DNS list: 127.0.0.1 listed with code 127.0.0.2
rep.test               reputation: 127.0.0.1 scores -7.5
dbl.test               URI (domain) list: bad.example 127.0.1.2, 192.0.2.1 127.0.1.4,
                       refused.example 127.255.255.254 (the list refused the query)
mx.test                MX 20 b, MX 10 a (a: 127.0.0.3, b: 127.0.0.4); nomx (A only),
                       null (null MX), gone (NXDOMAIN)
broken.test            SERVFAIL (NSD cannot load its zone)
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def rsa_key() -> tuple[bytes, str]:
    """A 1024-bit RSA key (fast to make; RFC 8301's minimum) and its DKIM key record value."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def txt(value: str) -> str:
    """TXT rdata in zone-file syntax, split in strings of at most 255 bytes."""
    return " ".join(f'"{value[i:i + 200]}"' for i in range(0, len(value), 200))


def zones(good_key: str, wrong_key: str, extra: dict[str, list[str]] | None = None,
          ) -> dict[str, list[str]]:
    z = {
        "auth.test": [
            f"pass IN TXT {txt('v=spf1 ip4:127.0.0.1 -all')}",
            f"good._domainkey.pass IN TXT {txt(good_key)}",
            f"revoked._domainkey.pass IN TXT {txt('v=DKIM1; k=rsa; p=')}",
            f"wrong._domainkey.pass IN TXT {txt(wrong_key)}",
            f"_dmarc.pass IN TXT {txt('v=DMARC1; p=none')}",
            f"fail IN TXT {txt('v=spf1 ip4:192.0.2.1 -all')}",
            f"good._domainkey.fail IN TXT {txt(good_key)}",
            f"_dmarc.fail IN TXT {txt('v=DMARC1; p=reject')}",
            f"soft IN TXT {txt('v=spf1 ~all')}",
            f"_dmarc.soft IN TXT {txt('v=DMARC1; p=quarantine')}",
            f"perm IN TXT {txt('v=spf1 ip4:127.0.0.1 bogus:x -all')}",
            f"temp IN TXT {txt('v=spf1 include:x.broken.test -all')}",
            f"helo IN TXT {txt('v=spf1 ip4:127.0.0.1 -all')}",
        ],
        "bl.test": ["1.0.0.127 IN A 127.0.0.2", "1.0.0.127 IN TXT \"listed for tests\""],
        "rep.test": ['1.0.0.127 IN TXT "-7.5"'],
        "dbl.test": ["bad.example IN A 127.0.1.2", "1.2.0.192 IN A 127.0.1.4",
                     "refused.example IN A 127.255.255.254"],
        # SPF passes here, and the organisational domain is not auth.test's: unaligned.
        "elsewhere.test": [f"@ IN TXT {txt('v=spf1 ip4:127.0.0.1 -all')}"],
        "mx.test": ["@ IN MX 20 b", "@ IN MX 10 a", "a IN A 127.0.0.3", "b IN A 127.0.0.4",
                    "nomx IN A 127.0.0.5", "null IN MX 0 ."],
    }
    for k, v in (extra or {}).items():
        z.setdefault(k, []).extend(v)
    return z
