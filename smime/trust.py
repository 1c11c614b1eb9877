"""Trust anchors and CRLs used by `smime.verify`, loadable from PEM files or directories."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import attrs
from asn1crypto import crl as asn1_crl
from asn1crypto import pem, x509

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
