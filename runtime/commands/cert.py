"""`filterlang cert create|sign|import|show|check`: S/MIME certificates for the gateway.

`create --ca` and `sign` make a small organisation CA, enough for two organisations to run a
realistic B2B setup (or tests) without an outside CA; `check --for ADDR` says whether a
certificate would verify as that sender's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smime._keys import load_certificate, load_certificates, load_pkcs12, load_private_key
from smime._path import path_reasons
from smime.certs import (
    KEY_TYPES,
    SIGNATURE_ALGORITHMS,
    USAGES,
    CertificateSpec,
    Problem,
    check_certificate,
    create_ca,
    create_self_signed,
    describe,
    generate_key,
    issue_certificate,
    private_key_pem,
    request_names,
    sender_binding_of,
    subject_name,
)
from smime.errors import SMIMEError
from smime.trust import TrustStore

PROG = "filterlang cert"
_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+")


def _split(values: list[str] | None) -> tuple[str, ...]:
    # Comma-separated lists as in the product form; the option may also be repeated.
    return tuple(item.strip() for value in values or [] for item in value.split(",") if item.strip())


def _add_passphrase(parser: argparse.ArgumentParser, what: str, prefix: str = "passphrase") -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--{prefix}-file", metavar="FILE", help=f"read the {what} from FILE")
    group.add_argument(f"--{prefix}-env", metavar="VAR",
                       help=f"read the {what} from environment variable VAR")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cert_command", metavar="ACTION", required=True)

    create = sub.add_parser("create", help="create a self-signed S/MIME certificate, key and "
                            "CSR (or, with --ca, an organisation CA)")
    create.add_argument("--ca", action="store_true",
                        help="make a CA certificate for the organisation (basicConstraints "
                        "cA=TRUE, keyCertSign) that `cert sign` issues S/MIME certificates with")
    create.add_argument("--cn", required=True, help="common name (the sending domain's FQDN)")
    create.add_argument("--org", default="", help="organization (exact legal name)")
    create.add_argument("--unit", default="", help="organizational unit")
    create.add_argument("--locality", default="", help="city (locality)")
    create.add_argument("--state", default="", help="state or province")
    create.add_argument("--country", default="", help="two-letter ISO country code")
    create.add_argument("--san-domain", "--san-dns", dest="san_domain", action="append",
                        metavar="DOMAINS", help="SAN domain names, comma-separated (repeatable)")
    create.add_argument("--san-email", action="append", metavar="ADDRESSES",
                        help="SAN e-mail addresses, comma-separated (repeatable)")
    create.add_argument("--signature-algorithm", choices=sorted(SIGNATURE_ALGORITHMS),
                        help="default: sha256-rsa, ecdsa-sha256 or ed25519 by key type")
    create.add_argument("--days", type=int,
                        help="days before expiration (365; 1825 for a CA)")
    create.add_argument("--key", choices=KEY_TYPES, default="rsa-2048",
                        help="key size or curve (rsa-2048)")
    create.add_argument("--usage", choices=USAGES, default="dual",
                        help="dual (RSA: sign + encrypt), signing or encryption")
    create.add_argument("-o", "--out", required=True, metavar="PREFIX",
                        help="write PREFIX.crt.pem, PREFIX.key.pem and PREFIX.csr.pem")
    _add_passphrase(create, "passphrase that encrypts the written key")
    create.add_argument("--json", action="store_true", help="print the certificate as JSON")

    sign = sub.add_parser("sign", help="issue an S/MIME certificate with an organisation CA, "
                          "from a request (--csr) or for a new key (--cn/--san-*)")
    sign.add_argument("--ca", required=True, metavar="CERT", help="the CA certificate (PEM)")
    sign.add_argument("--ca-key", required=True, metavar="KEY", help="the CA's private key")
    _add_passphrase(sign, "passphrase of the CA key", "ca-passphrase")
    source = sign.add_mutually_exclusive_group(required=True)
    source.add_argument("--csr", metavar="FILE", help="a certificate request (PEM or DER), "
                        "e.g. PREFIX.csr.pem from `cert create`; its subject and SAN are kept")
    source.add_argument("--cn", help="common name: make a new key and certify it")
    sign.add_argument("--org", default="", help="organization (with --cn)")
    sign.add_argument("--san-domain", "--san-dns", dest="san_domain", action="append",
                      metavar="DOMAINS", help="SAN domain names, comma-separated (repeatable)")
    sign.add_argument("--san-email", action="append", metavar="ADDRESSES",
                      help="SAN e-mail addresses, comma-separated (repeatable)")
    sign.add_argument("--key", choices=KEY_TYPES, default="rsa-2048",
                      help="key size or curve of the new key (with --cn; rsa-2048)")
    sign.add_argument("--usage", choices=USAGES,
                      help="dual (RSA, the default), signing (EC/Ed25519 default) or encryption")
    sign.add_argument("--days", type=int, default=365, help="days before expiration (365)")
    sign.add_argument("--out", required=True, metavar="PREFIX",
                      help="write PREFIX.crt.pem (and, with --cn, PREFIX.key.pem)")
    _add_passphrase(sign, "passphrase that encrypts the written key")
    sign.add_argument("--json", action="store_true", help="print the certificate as JSON")

    imp = sub.add_parser("import", help="import a PKCS#12 file (key + certificate + chain)")
    imp.add_argument("file", help="the .p12 / .pfx file")
    _add_passphrase(imp, "PKCS#12 passphrase")
    imp.add_argument("-o", "--out", required=True, metavar="PREFIX",
                     help="write PREFIX.crt.pem (with chain) and PREFIX.key.pem")
    _add_passphrase(imp, "passphrase that encrypts the written key", "key-passphrase")
    imp.add_argument("--json", action="store_true", help="print the certificate as JSON")

    show = sub.add_parser("show", help="print a certificate readably")
    show.add_argument("file", help="PEM or DER certificate")
    show.add_argument("--json", action="store_true", help="print JSON")

    check = sub.add_parser("check", help="check a certificate for S/MIME signing / encryption")
    check.add_argument("file", help="PEM or DER certificate")
    check.add_argument("--purpose", choices=("signing", "encryption", "both"),
                       help="both (default), or signing (the default with --for)")
    check.add_argument("--fqdn", action="store_true",
                       help="also require CN and SAN DNS names to be FQDNs")
    check.add_argument("--for", dest="sender", metavar="ADDR",
                       help="would a signature with this certificate verify as ADDR's? "
                       "(its address, or its domain as gateways accept; exit 0 yes, 1 no)")
    check.add_argument("--trust", metavar="PATH", action="append", default=[],
                       help="with --for: also validate the path to these trust anchors "
                       "(PEM files or folders; further certificates in the file are the chain)")
    check.add_argument("--json", action="store_true", help="print JSON")


def _passphrase(args: argparse.Namespace, prefix: str) -> bytes | None:
    file_name = getattr(args, f"{prefix}_file")
    env_name = getattr(args, f"{prefix}_env")
    if file_name:
        try:
            data = Path(file_name).read_bytes()
        except OSError as exc:
            raise SMIMEError(f"{file_name}: cannot read the passphrase file: {exc.strerror}") from None
        return data.rstrip(b"\r\n")
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise SMIMEError(f"environment variable {env_name} is not set; export the passphrase")
        return value.encode()
    return None


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SMIMEError(f"{path}: cannot read: {exc.strerror}") from None


def _write(path: Path, data: bytes, private: bool = False) -> None:
    try:
        if private:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        else:
            path.write_bytes(data)
    except OSError as exc:
        raise SMIMEError(f"{path}: cannot write: {exc.strerror}") from None


def _print_description(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, list):
            value = ", ".join(value) if value else "-"
        elif value is None:
            value = "(absent)"
        print(f"{key.replace('_', ' '):<{width}}  {value}")


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except SMIMEError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


def _load_csr(path: str) -> x509.CertificateSigningRequest:
    data = _read(path)
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise SMIMEError(f"{path}: not a certificate request: {exc}") from None


def _sign(args: argparse.Namespace) -> int:
    ca = load_certificate(_read(args.ca), where=args.ca)
    ca_key = load_private_key(_read(args.ca_key), _passphrase(args, "ca_passphrase"),
                              where=args.ca_key)
    new_key = None
    if args.csr:
        if args.san_email or args.san_domain or args.org:
            raise SMIMEError("--csr: the request says the subject and SAN; --org, --san-email "
                             "and --san-domain go with --cn")
        csr = _load_csr(args.csr)
        try:
            emails, domains = request_names(csr)
        except SMIMEError as exc:
            raise SMIMEError(f"{args.csr}: {exc}") from None
        subject, public = csr.subject, csr.public_key()
    else:
        spec = CertificateSpec(common_name=args.cn, organization=args.org)
        subject = subject_name(spec)
        emails, domains = _split(args.san_email), _split(args.san_domain)
        new_key = generate_key(args.key)
        public = new_key.public_key()
    cert = issue_certificate(ca, ca_key, subject=subject, public_key=public, san_emails=emails,
                             san_domains=domains, usage=args.usage, days=args.days)
    _write(Path(f"{args.out}.crt.pem"), cert.public_bytes(serialization.Encoding.PEM))
    wrote = [f"{args.out}.crt.pem"]
    if new_key is not None:
        passphrase = _passphrase(args, "passphrase")
        _write(Path(f"{args.out}.key.pem"), private_key_pem(new_key, passphrase), private=True)
        wrote.append(f"{args.out}.key.pem" + (" (encrypted)" if passphrase else ""))
    if args.json:
        _print_description(describe(cert), True)
    else:
        print(f"wrote {', '.join(wrote)}: issued by {ca.subject.rfc4514_string()}; partners "
              f"trust it through {args.ca} ([smime] trust_anchors)")
    return 0


def _chain_problems(cert: x509.Certificate, chain: list[x509.Certificate],
                    trust_paths: list[str]) -> list[Problem]:
    try:
        trust = TrustStore.load(trust_paths)
    except (SMIMEError, OSError) as exc:
        raise SMIMEError(f"trust anchors: {exc}") from None
    der = serialization.Encoding.DER
    reasons = path_reasons(ax509.Certificate.load(cert.public_bytes(der)),
                           [ax509.Certificate.load(c.public_bytes(der)) for c in chain],
                           trust, dt.datetime.now(dt.UTC), (), "off")
    return [Problem("path", f"{code}: {text}", "give the issuing CA to --trust, or pin this "
                    "certificate itself as a trust anchor") for code, text in reasons]


def _check(args: argparse.Namespace) -> int:
    cert, *chain = load_certificates(_read(args.file), where=args.file)
    purpose = args.purpose or ("signing" if args.sender else "both")
    purposes = ("signing", "encryption") if purpose == "both" else (purpose,)
    problems = check_certificate(cert, purposes, fqdn=args.fqdn)
    binding = None
    if args.sender is not None and not _ADDRESS.fullmatch(args.sender):
        raise SMIMEError(f"--for: {args.sender!r} is not an address; use e.g. alice@example.com")
    if args.sender:
        binding = sender_binding_of(cert, args.sender, domain_certificates=True)
        if binding is None:
            problems.append(Problem(
                "subject alternative name", f"names neither {args.sender} nor its domain",
                f"issue a certificate with SAN e-mail {args.sender} or SAN domain "
                f"{args.sender.rpartition('@')[2]}"))
        if args.trust:
            problems += _chain_problems(cert, chain, args.trust)
    elif args.trust:
        raise SMIMEError("--trust goes with --for ADDR")
    errors = [p for p in problems if p.severity == "error"]
    what = " and ".join(purposes)
    if args.json:
        report: dict[str, Any] = {
            "file": args.file, "purposes": list(purposes), "ok": not errors,
            "problems": [{"field": p.field, "problem": p.problem, "fix": p.fix,
                          "severity": p.severity} for p in problems],
        }
        if args.sender:
            report |= {"for": args.sender, "binding": binding}
        print(json.dumps(report, indent=2))
        return 1 if errors else 0
    for problem in problems:
        print(f"{args.file}: {problem}")
    if binding == "address":
        print(f"{args.file}: names {args.sender} (binding: address)")
    elif binding == "domain":
        print(f"{args.file}: names the domain of {args.sender} (binding: domain): gateways "
              "accept it ([smime] accept_domain_certificates, on by default); "
              "`filterlang smime verify` needs --domain-certificates")
    target = f" as {args.sender}'s" if args.sender else ""
    print(f"{args.file}: {'OK' if not errors else 'FAILED'} for {what}{target}")
    return 1 if errors else 0


def _run(args: argparse.Namespace) -> int:
    if args.cert_command == "sign":
        return _sign(args)
    if args.cert_command == "check":
        return _check(args)
    if args.cert_command == "create":
        spec = CertificateSpec(
            common_name=args.cn, organization=args.org, organizational_unit=args.unit,
            locality=args.locality, state=args.state, country=args.country,
            san_domains=_split(args.san_domain), san_emails=_split(args.san_email),
            signature_algorithm=args.signature_algorithm,
            days=args.days or (1825 if args.ca else 365), key_type=args.key,
            usage=args.usage,
        )
        passphrase = _passphrase(args, "passphrase")
        created = create_ca(spec) if args.ca else create_self_signed(spec)
        _write(Path(f"{args.out}.crt.pem"), created.certificate_pem())
        _write(Path(f"{args.out}.key.pem"), created.key_pem(passphrase), private=True)
        _write(Path(f"{args.out}.csr.pem"), created.csr_pem())
        if args.json:
            _print_description(describe(created.certificate), True)
        else:
            print(f"wrote {args.out}.crt.pem, {args.out}.key.pem"
                  f"{' (encrypted)' if passphrase else ''}, {args.out}.csr.pem")
        return 0
    if args.cert_command == "import":
        key, cert, chain = load_pkcs12(_read(args.file), _passphrase(args, "passphrase"),
                                       where=args.file)
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *chain])
        key_passphrase = _passphrase(args, "key_passphrase")
        _write(Path(f"{args.out}.crt.pem"), pem)
        _write(Path(f"{args.out}.key.pem"), private_key_pem(key, key_passphrase), private=True)
        if not args.json:
            print(f"imported {args.file}: wrote {args.out}.crt.pem ({1 + len(chain)} "
                  f"certificate(s)) and {args.out}.key.pem")
        _print_description(describe(cert), args.json)
        return 0
    cert = load_certificate(_read(args.file), where=args.file)
    _print_description(describe(cert), args.json)
    return 0
