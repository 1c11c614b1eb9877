"""A bounded cache of successful path validations, per signer chain (issue 12, inbound speed).

Validating a signer's path with CRLs costs some 9 ms (pyhanko-certvalidator), against well under
one for the rest of a 4 KB message's verification; a partner signs thousands of messages with
one certificate. So a path found valid is remembered, and the next message of the same chain
is not validated again while nothing that decided the answer can have changed:

- the key holds everything path validation reads: the signer's certificate, the other
  certificates the message carries, the trust anchors and CRLs held (TrustStore.fingerprint:
  a new CRL or anchor is a new key, so the old answer is never found again), the CRLs the
  message carries and the policy switches the validator is given;
- an answer holds from the moment it was found until the first moment after it at which any
  time-dependent input changes: a certificate's notBefore/notAfter, a CRL's
  thisUpdate/nextUpdate, a revocation date (a CRL may name a revocation to come), less the
  validator's time tolerance; and never longer than MAX_AGE, nor for an earlier moment;
- only success is cached: a failure is found again each time (so it can never be mistaken
  for a success, and it shows its own reason), and validations that fetch revocation
  information over the network are never cached (what they fetch is not in the key).

Bounded: the least recently used answers go first beyond MAX_ENTRIES."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from asn1crypto import crl as asn1_crl
from asn1crypto import x509

MAX_ENTRIES = 4096
MAX_AGE = dt.timedelta(hours=1)
# pyhanko-certvalidator's default time_tolerance is one second: an answer stops a little
# before each event, so the tolerance never makes a stale answer look current.
TOLERANCE = dt.timedelta(seconds=2)


def _time(value: object) -> dt.datetime | None:
    return value if isinstance(value, dt.datetime) else None


def certificate_events(certs: Iterable[x509.Certificate]) -> list[dt.datetime]:
    """The moments at which these certificates become valid or expire."""
    out = []
    for cert in certs:
        try:
            validity = cert["tbs_certificate"]["validity"]
            for edge in ("not_before", "not_after"):
                moment = _time(validity[edge].native)
                if moment is not None:
                    out.append(moment)
        except (ValueError, KeyError, TypeError):
            continue
    return out


def crl_events(crls: Iterable[asn1_crl.CertificateList | bytes]) -> list[dt.datetime]:
    """The moments at which these CRLs start or stop being current, and any revocation date
    later than its CRL's thisUpdate (one that takes effect after the CRL was issued)."""
    out = []
    for raw in crls:
        try:
            c = raw if isinstance(raw, asn1_crl.CertificateList) else asn1_crl.CertificateList.load(raw)
            tbs = c["tbs_cert_list"]
            issued = _time(tbs["this_update"].native)
            following = _time(tbs["next_update"].native)
            out += [m for m in (issued, following) if m is not None]
            for entry in tbs["revoked_certificates"]:
                revoked = _time(entry["revocation_date"].native)
                if revoked is not None and (issued is None or revoked > issued):
                    out.append(revoked)
        except (ValueError, KeyError, TypeError):
            continue
    return out


def raw(value: x509.Certificate | asn1_crl.CertificateList) -> bytes:
    """The encoding an ASN.1 value was loaded from, as is. Not dump(): that may encode the
    value anew (asn1crypto re-encodes BER it was given, for one), and the validator, which
    checks signatures over what dump() returns, then fails a path that is valid (PKITS
    ValidNameChainingUIDsTest6)."""
    return bytes(value.contents or b"")


def chain_key(
    cert: x509.Certificate,
    others: Sequence[x509.Certificate],
    trust_fingerprint: bytes,
    message_crls: Sequence[bytes],
    settings: tuple[object, ...],
) -> bytes:
    """What a path validation's answer depends on, as one digest."""
    h = hashlib.sha256(b"filterlang path v1\0")
    h.update(repr(settings).encode())
    h.update(trust_fingerprint)
    for part in (raw(cert), b"\0others", *sorted(raw(c) for c in others),
                 b"\0crls", *sorted(bytes(c) for c in message_crls)):
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


class PathCache:
    """Successful path validations: key -> the moments between which the answer holds."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_age: dt.timedelta = MAX_AGE) -> None:
        self.max_entries = max_entries
        self.max_age = max_age
        self._entries: OrderedDict[bytes, tuple[dt.datetime, dt.datetime]] = OrderedDict()
        self._lock = threading.Lock()  # the queue's loop and its threads verify side by side
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def valid(self, key: bytes, moment: dt.datetime) -> bool:
        """Whether the path of `key` was found valid for `moment`."""
        with self._lock:
            span = self._entries.get(key)
            if span is not None and span[0] <= moment <= span[1]:
                self._entries.move_to_end(key)
                self.hits += 1
                return True
            self.misses += 1
            return False

    def remember(self, key: bytes, moment: dt.datetime, events: Iterable[dt.datetime]) -> None:
        """The path of `key` is valid at `moment`: keep that until the next event after it."""
        until = moment + self.max_age
        for event in events:
            if event + TOLERANCE > moment:
                until = min(until, event - TOLERANCE)
        if until < moment:
            return  # an input changes right about now: nothing worth keeping
        with self._lock:
            self._entries[key] = (moment, until)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0


PATHS = PathCache()
