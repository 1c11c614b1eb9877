"""`filterlang cert create|import|show|check`: S/MIME certificates for the gateway."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from smime._keys import load_certificate, load_pkcs12
from smime.certs import (
    KEY_TYPES,
    SIGNATURE_ALGORITHMS,
    USAGES,
    CertificateSpec,
    check_certificate,
    create_self_signed,
    describe,
    private_key_pem,
)
from smime.errors import SMIMEError

PROG = "filterlang cert"


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

    create = sub.add_parser("create", help="create a self-signed S/MIME certificate, key and CSR")
    create.add_argument("--cn", required=True, help="common name (the sending domain's FQDN)")
    create.add_argument("--org", default="", help="organization (exact legal name)")
    create.add_argument("--unit", default="", help="organizational unit")
    create.add_argument("--locality", default="", help="city (locality)")
    create.add_argument("--state", default="", help="state or province")
    create.add_argument("--country", default="", help="two-letter ISO country code")
    create.add_argument("--san-domain", action="append", metavar="DOMAINS",
                        help="SAN domain names, comma-separated (repeatable)")
    create.add_argument("--san-email", action="append", metavar="ADDRESSES",
                        help="SAN e-mail addresses, comma-separated (repeatable)")
    create.add_argument("--signature-algorithm", choices=sorted(SIGNATURE_ALGORITHMS),
                        help="default: sha256-rsa, ecdsa-sha256 or ed25519 by key type")
    create.add_argument("--days", type=int, default=365, help="days before expiration (365)")
    create.add_argument("--key", choices=KEY_TYPES, default="rsa-2048",
                        help="key size or curve (rsa-2048)")
    create.add_argument("--usage", choices=USAGES, default="dual",
                        help="dual (RSA: sign + encrypt), signing or encryption")
    create.add_argument("--out", required=True, metavar="PREFIX",
                        help="write PREFIX.crt.pem, PREFIX.key.pem and PREFIX.csr.pem")
    _add_passphrase(create, "passphrase that encrypts the written key")
    create.add_argument("--json", action="store_true", help="print the certificate as JSON")

    imp = sub.add_parser("import", help="import a PKCS#12 file (key + certificate + chain)")
    imp.add_argument("file", help="the .p12 / .pfx file")
    _add_passphrase(imp, "PKCS#12 passphrase")
    imp.add_argument("--out", required=True, metavar="PREFIX",
                     help="write PREFIX.crt.pem (with chain) and PREFIX.key.pem")
    _add_passphrase(imp, "passphrase that encrypts the written key", "key-passphrase")
    imp.add_argument("--json", action="store_true", help="print the certificate as JSON")

    show = sub.add_parser("show", help="print a certificate readably")
    show.add_argument("file", help="PEM or DER certificate")
    show.add_argument("--json", action="store_true", help="print JSON")

    check = sub.add_parser("check", help="check a certificate for S/MIME signing / encryption")
    check.add_argument("file", help="PEM or DER certificate")
    check.add_argument("--purpose", choices=("signing", "encryption", "both"), default="both")
    check.add_argument("--fqdn", action="store_true",
                       help="also require CN and SAN DNS names to be FQDNs")
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


def _run(args: argparse.Namespace) -> int:
    if args.cert_command == "create":
        spec = CertificateSpec(
            common_name=args.cn, organization=args.org, organizational_unit=args.unit,
            locality=args.locality, state=args.state, country=args.country,
            san_domains=_split(args.san_domain), san_emails=_split(args.san_email),
            signature_algorithm=args.signature_algorithm, days=args.days, key_type=args.key,
            usage=args.usage,
        )
        passphrase = _passphrase(args, "passphrase")
        created = create_self_signed(spec)
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
    if args.cert_command == "show":
        _print_description(describe(cert), args.json)
        return 0
    purposes = ("signing", "encryption") if args.purpose == "both" else (args.purpose,)
    problems = check_certificate(cert, purposes, fqdn=args.fqdn)
    errors = [p for p in problems if p.severity == "error"]
    if args.json:
        print(json.dumps({
            "file": args.file, "purposes": list(purposes), "ok": not errors,
            "problems": [{"field": p.field, "problem": p.problem, "fix": p.fix,
                          "severity": p.severity} for p in problems],
        }, indent=2))
    else:
        for problem in problems:
            print(f"{args.file}: {problem}")
        print(f"{args.file}: {'OK' if not errors else 'FAILED'} for {' and '.join(purposes)}")
    return 1 if errors else 0
