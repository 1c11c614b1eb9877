"""Choosing a key: the best encryption key for a recipient, the keys that may verify a sender."""

from __future__ import annotations

import time
from datetime import datetime

from asn1crypto import pem
from asn1crypto import x509 as ax509

from smime.keystore import Candidate, KeyRecord, KeyStore, LookupResult

_RANK = {"address": 0, "domain": 1, "wildcard": 2}


def _refusal(key: KeyRecord, at: int, purpose: str) -> str | None:
    if key.revoked:
        return "revoked"
    if at < key.not_before:
        return "not yet valid"
    if at >= key.not_after:
        return "expired"
    # Key usage comes from the stored columns: parsing the PEM here cost ~40 us per candidate.
    if purpose == "encrypt" and not key.can_encrypt:
        return "key usage does not allow encryption"
    if purpose == "verify" and not key.can_sign:
        return "key usage does not allow signing"
    return None


def _consider(store: KeyStore, address: str, now: datetime | None, purpose: str) -> list[Candidate]:
    at = int(now.timestamp()) if now else int(time.time())
    found = [Candidate(key, how, _refusal(key, at, purpose)) for key, how in store.candidates_for(address)]
    # Exact address before domain before wildcard; then newest notBefore; public before harvested.
    found.sort(key=lambda c: (_RANK[c.matched_by], -c.key.not_before, c.key.kind != "public", c.key.id))
    return found


def find_encryption_key(store: KeyStore, address: str, now: datetime | None = None) -> LookupResult:
    """The best valid key for `address`, and why it (or nothing) was chosen."""
    candidates = _consider(store, address, now, "encrypt")
    for cand in candidates:
        if cand.refused is None:
            why = (f"{cand.key.kind} key {cand.key.name!r} matches the {cand.matched_by}"
                   f" and is the newest valid one (notBefore {cand.key.not_before})")  # fmt: skip
            return LookupResult(address.lower(), cand.key, why, tuple(candidates))
    why = "no stored key names this address or its domain" if not candidates else (
        "every candidate was refused: " + "; ".join(f"{c.key.name}: {c.refused}" for c in candidates))
    return LookupResult(address.lower(), None, why, tuple(candidates))


def verification_keys(store: KeyStore, sender: str, now: datetime | None = None) -> list[KeyRecord]:
    """Certificates that may verify a message from `sender` (valid, signing usage, exact address)."""
    return [c.key for c in _consider(store, sender, now, "verify")
            if c.refused is None and c.matched_by == "address"]  # fmt: skip


def certificates_for(store: KeyStore, sender: str | None) -> list[ax509.Certificate]:
    """The stored certificates that name `sender` (its address or its domain), for finding a
    signer certificate that a message leaves out (RFC 5652 5.1; gpgsm does). Only a place to
    look: the verifier still checks the signature, the path, the validity and the binding.
    Revoked keys are left out; the lookup is by address, so its cost stays that of one key
    lookup however large the store."""
    if not sender or "@" not in sender:
        return []
    found = []
    for key, _how in store.candidates_for(sender):
        if key.revoked:
            continue
        try:
            found.append(ax509.Certificate.load(pem.unarmor(key.pem.encode("ascii"))[2]))
        except (ValueError, TypeError):
            continue  # a store row we cannot read is not a certificate to offer
    return found
