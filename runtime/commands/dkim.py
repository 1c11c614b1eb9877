"""`filterlang dkim keygen`: a DKIM signing key for `[dkim.DOMAIN]` and its DNS TXT record."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from runtime.engine.providers.dkimsign import keygen

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dkim_command", metavar="ACTION", required=True)
    gen = sub.add_parser("keygen", help="make an RSA signing key; print its DNS TXT record")
    gen.add_argument("--domain", required=True, help="the signing domain (d=), e.g. example.org")
    gen.add_argument("--selector", required=True, help="the selector (s=), e.g. mail2026")
    gen.add_argument("--bits", type=int, default=2048, choices=(1024, 2048, 3072, 4096),
                     help="RSA key size (2048; RFC 8301 asks for at least 1024)")
    gen.add_argument("--out", type=Path, default=None,
                     help="where the private key goes (default: SELECTOR.DOMAIN.dkim.pem)")


def _name_problem(what: str, text: str) -> str | None:
    labels = text.rstrip(".").split(".")
    if not text or not all(_LABEL.fullmatch(label) for label in labels):
        return f"--{what} {text!r} is not a DNS name (letters, digits and '-' between dots)"
    return None


def run(args: argparse.Namespace) -> int:
    for what, text in (("domain", args.domain), ("selector", args.selector)):
        problem = _name_problem(what, text)
        if problem:
            print(f"filterlang dkim keygen: {problem}", file=sys.stderr)
            return 2
    domain = args.domain.lower().rstrip(".")
    out: Path = args.out or Path(f"{args.selector}.{domain}.dkim.pem")
    if out.exists():
        print(f"filterlang dkim keygen: {out} exists; give another --out (a key in use is "
              "never overwritten)", file=sys.stderr)
        return 1
    pem, record = keygen(domain, args.selector, args.bits)
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
    except OSError as exc:
        print(f"filterlang dkim keygen: cannot write {out}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"private key written to {out}; publish this record, then add to gateway.toml:\n"
          f"  [dkim.{domain}]\n  selector = \"{args.selector}\"\n"
          f"  key = \"{out}\"", file=sys.stderr)
    print(record)
    return 0
