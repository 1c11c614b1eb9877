"""Trust anchors and CRLs used by `smime.verify`, loadable from PEM files or directories."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from pathlib import Path

import attrs
from asn1crypto import crl as asn1_crl
from asn1crypto import pem, x509

from smime._pathcache import certificate_events, crl_events, raw
from smime.errors import MalformedError


def _blocks(data: bytes, where: str) -> list[tuple[str, bytes]]:
    if not pem.detect(data):
        return [("DER", data)]
    try:
        return [(kind, der) for kind, _h, der in pem.unarmor(data, multiple=True)]
    except ValueError as exc:
        raise MalformedError(f"{where}: bad PEM ({exc})") from None


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]


@attrs.frozen
class TrustStore:
    """Trust anchors (self-signed or not) and CRLs from a configured directory."""

    anchors: tuple[x509.Certificate, ...] = ()
    crls: tuple[asn1_crl.CertificateList, ...] = ()
    # Worked out once, on first use, for the path-validation cache (smime/_pathcache.py).
    _fingerprint: bytes = attrs.field(default=b"", init=False, eq=False, repr=False)
    _events: tuple[dt.datetime, ...] | None = attrs.field(default=None, init=False, eq=False,
                                                          repr=False)

    def fingerprint(self) -> bytes:
        """A digest of every anchor and CRL held: two stores trust alike exactly when their
        fingerprints match, so a changed CRL or anchor never finds an older cached answer."""
        if not self._fingerprint:
            h = hashlib.sha256(b"filterlang trust v1\0")
            for part in (*(raw(a) for a in self.anchors), b"\0crls", *(raw(c) for c in self.crls)):
                h.update(len(part).to_bytes(4, "big"))
                h.update(part)
            object.__setattr__(self, "_fingerprint", h.digest())  # frozen: set once, here
        return self._fingerprint

    def events(self) -> tuple[dt.datetime, ...]:
        """The moments at which what this store says changes: anchors' validity, CRLs'
        thisUpdate and nextUpdate, revocation dates later than their CRL."""
        if self._events is None:
            found = (*certificate_events(self.anchors), *crl_events(self.crls))
            object.__setattr__(self, "_events", tuple(sorted(found)))
        assert self._events is not None
        return self._events

    @classmethod
    def load(
        cls, anchors: Iterable[str | Path] = (), crl_paths: Iterable[str | Path] = ()
    ) -> TrustStore:
        """Read certificates from PEM/DER files or directories; CRLs likewise."""
        certs: list[x509.Certificate] = []
        for p in anchors:
            for f in _files(Path(p)):
                for kind, der in _blocks(f.read_bytes(), str(f)):
                    if kind in ("CERTIFICATE", "DER"):
                        try:
                            cert = x509.Certificate.load(der)
                            _ = cert.native
                        except ValueError as exc:
                            raise MalformedError(f"{f}: not a certificate ({exc})") from None
                        certs.append(cert)
        crls: list[asn1_crl.CertificateList] = []
        for p in crl_paths:
            for f in _files(Path(p)):
                for _kind, der in _blocks(f.read_bytes(), str(f)):
                    try:
                        c = asn1_crl.CertificateList.load(der)
                        _ = c.native
                    except ValueError as exc:
                        raise MalformedError(f"{f}: not a CRL ({exc})") from None
                    crls.append(c)
        return cls(tuple(certs), tuple(crls))
