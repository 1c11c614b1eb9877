"""How a certificate names a sender: by its address, or by its domain (gateway certificates).

One rule for the verifier, the harvester, key lookup and `filterlang cert check`, so that what
verifies, what is harvested and what is found again for encrypting never disagree.

A gateway's organisation certificate carries the domain it signs for as a SAN dNSName (the
product brief's "Subject Alternative Name (Domains)", e.g. `example.com` and `*.example.net`).
Such a name covers every mailbox of that domain; a `*.` wildcard covers exactly one more label
on the left (`*.example.net` covers `mail.example.net`, neither `example.net` itself nor
`a.b.example.net`), as RFC 6125 6.4.3 has it for host names. A wildcard must stand over at
least two labels, so `*.com` covers nothing. Only the verifying policy decides whether a
domain name counts at all: mail clients bind per-user addresses only (RFC 8550 3).
"""

from __future__ import annotations

from collections.abc import Iterable

ADDRESS, DOMAIN = "address", "domain"


def _norm(name: str) -> str:
    # Compared in A-label form, case-insensitively (RFC 8550 3); a trailing root dot is noise.
    name = name.strip().lower().rstrip(".")
    try:
        return name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError:
        return name


def domain_covers(pattern: str, domain: str) -> bool:
    """Whether the SAN DNS name `pattern` (exact or `*.` wildcard) names `domain`."""
    pattern, domain = _norm(pattern), _norm(domain)
    if not pattern or not domain:
        return False
    if pattern.startswith("*."):
        parent = pattern[2:]
        if parent.count(".") < 1 or "*" in parent:
            return False
        head, dot, rest = domain.partition(".")
        return bool(dot) and bool(head) and rest == parent
    return "*" not in pattern and pattern == domain


def covering_domains(domains: Iterable[str], address: str) -> tuple[str, ...]:
    """The SAN DNS names among `domains` that cover `address`'s domain."""
    domain = address.rpartition("@")[2]
    return tuple(d for d in domains if domain_covers(d, domain))


def sender_binding(emails: Iterable[str], domains: Iterable[str], address: str, *,
                   domain_certificates: bool) -> str | None:
    """"address" when the certificate names `address`, "domain" when (allowed and) one of its
    domain names covers the address's domain, else None."""
    addr = address.strip().lower()
    if "@" not in addr:
        return None
    if any(e.strip().lower() == addr for e in emails):
        return ADDRESS
    if domain_certificates and covering_domains(domains, addr):
        return DOMAIN
    return None
