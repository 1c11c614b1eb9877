"""`filterlang smime sign|encrypt|protect|verify|decrypt|unwrap|inspect` on message files.

An operator's debugging tool, like `openssl smime` but saying why. Exit status: 0 done /
verified, 1 not verified or could not be decrypted (or the message is malformed), 2 usage
errors (bad options, unreadable key, certificate or trust files).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smime import _cms_signed as cs
from smime import mime
from smime._cms_enveloped import UNSUPPORTED_ALGS
from smime._keys import PrivateKey, load_certificates, load_pkcs12, load_private_key
from smime.compose import (
    LEGACY_3DES,
    Form,
    Layer,
    Mode,
    Signer,
    SignerLookup,
    UnwrapResult,
    is_smime,
    media_type,
    protect,
    unwrap,
)
from smime.envelope import CIPHERS, decrypt, inspect_envelope
from smime.errors import DecryptionError, MalformedError, SMIMEError, UnsupportedError
from smime.keystore.lookup import certificates_for
from smime.policy import VerifyPolicy
from smime.trust import TrustStore
from smime.verify import VerifyResult, verify

PROG = "filterlang smime"
OK, FAILED, USAGE = 0, 1, 2


class UsageError(Exception):
    """Options or the files they name cannot be used (exit status 2)."""


# ------------------------------------------------------------------------------ arguments


def _input(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", default="-", help="message file (.eml); - or none: stdin")
    p.add_argument("-o", "--out", metavar="FILE",
                   help="write the resulting message to FILE (default: stdout for "
                   "sign/encrypt/protect; not written for the others)")


def _identity(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_argument_group(f"{what} (PEM key + certificate, or PKCS#12)")
    g.add_argument("--key", metavar="PEM", help="private key")
    g.add_argument("--cert", metavar="PEM", help="certificate; further certificates = chain")
    g.add_argument("--chain", metavar="PEM", action="append", default=[],
                   help="intermediate certificates to include (repeatable)")
    g.add_argument("--p12", metavar="FILE", help="PKCS#12 file with key, certificate, chain")
    g.add_argument("--passphrase-file", metavar="FILE", help="passphrase of the key or .p12")
    g.add_argument("--passphrase-env", metavar="VAR", help="environment variable holding it")


def _recipients(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--recipient", "-r", metavar="PEM", action="append", default=[],
                   required=required, help="recipient certificate (repeatable)")
    p.add_argument("--cipher", choices=CIPHERS,
                   help="content cipher (default: AES-256-GCM, what recipients advertise)")


def _trust(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust", metavar="PATH", action="append", default=[],
                   help="trust anchor file or directory (PEM/DER; repeatable)")
    p.add_argument("--crl", metavar="PATH", action="append", default=[],
                   help="CRL file or directory (repeatable)")
    p.add_argument("--from", dest="from_address", metavar="ADDR",
                   help="check the signer against ADDR instead of the From header")
    p.add_argument("--now", metavar="ISO-TIME", help="validate as of this time (UTC)")
    p.add_argument("--require-signed-attributes", action="store_true",
                   help="refuse signers without signed attributes, as the gateway does")
    p.add_argument("--domain-certificates", action="store_true",
                   help="let a certificate's SAN domain (example.com, *.example.com) stand for "
                   "every sender of that domain, as gateways' organisation certificates do")
    p.add_argument("--certfile", metavar="PEM", action="append", default=[],
                   help="certificates to find the signer among when the message does not "
                   "carry it (repeatable); the trust anchors are searched too")
    p.add_argument("--store", metavar="URL",
                   help="also look for a missing signer certificate among this key store's "
                   "certificates for the sender (e.g. sqlite:///var/keys.sqlite3)")
    p.add_argument("--legacy", action="store_true",
                   help="read old mail: accept SHA-1, RSA-1024 and DSA signatures, each "
                   "flagged (RFC 8551 Appendix B)")
    p.add_argument("--at-signing-time", action="store_true",
                   help="validate the certificate path at the signer's signing time, not now "
                   "(stored mail whose arrival you trust)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _no_3des(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-3des", dest="allow_3des", action="store_false",
                   help="refuse 3DES content (by default it is read, with a legacy warning)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("exit status: 0 done; 1 problems found or not verified (for smime: not "
                     "verified, not decrypted or a malformed message); 2 usage or configuration "
                     "error (options, unreadable key or trust files)")
    sub = parser.add_subparsers(dest="smime_command", metavar="ACTION", required=True)
    sign = sub.add_parser("sign", help="sign a message (detached by default)")
    _input(sign)
    _identity(sign, "signer")
    sign.add_argument("--form", choices=list(Form), default="detached")
    sign.add_argument("--digest", choices=("sha256", "sha384", "sha512"), default="sha256")
    enc = sub.add_parser("encrypt", help="encrypt a message to recipient certificates")
    _input(enc)
    _recipients(enc, True)
    prot = sub.add_parser("protect", help="sign, encrypt, sign-encrypt or triple-wrap")
    _input(prot)
    prot.add_argument("--mode", choices=list(Mode), required=True)
    _identity(prot, "signer")
    _recipients(prot, False)
    prot.add_argument("--form", choices=list(Form), default="detached")
    prot.add_argument("--digest", choices=("sha256", "sha384", "sha512"), default="sha256")
    prot.add_argument("--encrypt-to-self", action="store_true",
                      help="also encrypt to the signer's certificate")
    ver = sub.add_parser("verify", help="verify a signed message (one layer)")
    _input(ver)
    _trust(ver)
    dec = sub.add_parser("decrypt", help="decrypt an encrypted message (one layer)")
    _input(dec)
    _identity(dec, "recipient identity")
    _no_3des(dec)
    dec.add_argument("--json", action="store_true", help="print the result as JSON")
    unw = sub.add_parser("unwrap", help="peel every layer: decrypt and verify, outside in")
    _input(unw)
    _identity(unw, "recipient identity (optional)")
    _trust(unw)
    unw.add_argument("--max-layers", type=int, default=4, help="nesting limit (4)")
    _no_3des(unw)
    ins = sub.add_parser("inspect", help="outline a message's S/MIME structure (no keys)")
    _input(ins)
    ins.add_argument("--json", action="store_true", help="print the result as JSON")


# --------------------------------------------------------------------------------- loading


def _read(path: str, what: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the {what}: {exc.strerror}") from None


def _passphrase(args: argparse.Namespace) -> bytes | None:
    if args.passphrase_file:
        return _read(args.passphrase_file, "passphrase file").rstrip(b"\r\n")
    if args.passphrase_env:
        value = os.environ.get(args.passphrase_env)
        if value is None:
            raise UsageError(f"environment variable {args.passphrase_env} is not set")
        return value.encode()
    return None


def _certs(path: str) -> list[x509.Certificate]:
    try:
        return load_certificates(_read(path, "certificate file"), where=path)
    except SMIMEError as exc:
        raise UsageError(str(exc)) from None


def _identity_of(args: argparse.Namespace, required: bool
                 ) -> tuple[PrivateKey, x509.Certificate, list[x509.Certificate]] | None:
    try:
        if args.p12:
            return load_pkcs12(_read(args.p12, "PKCS#12 file"), _passphrase(args), where=args.p12)
        if args.key and args.cert:
            key = load_private_key(_read(args.key, "key file"), _passphrase(args), where=args.key)
            cert, *chain = _certs(args.cert)
            return key, cert, [*chain, *(c for p in args.chain for c in _certs(p))]
    except SMIMEError as exc:
        raise UsageError(str(exc)) from None
    if args.key or args.cert:
        raise UsageError("--key and --cert go together (or use --p12)")
    if required:
        raise UsageError("this action needs a key: give --key and --cert, or --p12")
    return None


def _signer(args: argparse.Namespace, required: bool) -> Signer | None:
    found = _identity_of(args, required)
    if found is None:
        return None
    key, cert, chain = found
    if not isinstance(key, cs.PrivateKey):
        raise UsageError("an X25519 key cannot sign")
    return Signer(key, cert, tuple(chain))


def _now(args: argparse.Namespace) -> dt.datetime | None:
    if not args.now:
        return None
    try:
        when = dt.datetime.fromisoformat(args.now)
    except ValueError:
        raise UsageError(f"--now {args.now!r}: not an ISO 8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _policy(args: argparse.Namespace) -> VerifyPolicy:
    return VerifyPolicy(require_signed_attributes=args.require_signed_attributes,
                        domain_certificates=args.domain_certificates,
                        legacy=args.legacy, at_signing_time=args.at_signing_time)


def _extra_certs(args: argparse.Namespace, trust: TrustStore) -> list[ax509.Certificate]:
    """--certfile certificates, then the trust anchors: where a signer certificate that the
    message leaves out (RFC 5652 5.1) is looked for."""
    certs = [ax509.Certificate.load(c.public_bytes(Encoding.DER))
             for p in args.certfile for c in _certs(p)]
    return [*certs, *trust.anchors]


def _signer_lookup(args: argparse.Namespace) -> SignerLookup | None:
    """The key store's certificates for the sender, asked only for a missing signer."""
    url = args.store
    if not url:
        return None
    from smime.keystore import open_keystore  # only when a store is named: it costs imports

    try:
        store = open_keystore(url)
    except (SMIMEError, OSError, ValueError) as exc:
        raise UsageError(f"--store {url}: {exc}") from None
    return lambda address: certificates_for(store, address)


def _trust_of(args: argparse.Namespace) -> TrustStore:
    try:
        return TrustStore.load(args.trust, args.crl)
    except (SMIMEError, OSError) as exc:
        raise UsageError(f"trust anchors / CRLs: {exc}") from None


# -------------------------------------------------------------------------------- printing


def _subject(cert: ax509.Certificate | None) -> str:
    return cert.subject.human_friendly if cert is not None else "(certificate not found)"


def _reasons(reasons: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"code": code, "text": text} for code, text in reasons]


def _verify_dict(res: VerifyResult) -> dict[str, Any]:
    return {
        "verified": res.verified, "form": res.form, "binding": res.binding,
        "reasons": _reasons(res.reasons),
        "signers": [
            {"subject": _subject(s.certificate), "verified": s.verified,
             "digest": s.digest_algorithm, "binding": s.binding, "reasons": _reasons(s.reasons),
             "signing_time": s.signing_time.isoformat() if s.signing_time else None}
            for s in res.signers
        ],
    }


def _unwrap_binding(res: UnwrapResult) -> str | None:
    # The innermost signature is the author's (an outer one is a hop's, RFC 2634 1.1).
    inner = [layer.verify for layer in res.layers if layer.kind == "signed" and layer.verify]
    return inner[-1].binding if res.verified and inner else None


def _layer_dict(layer: Layer) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": layer.kind, "ok": layer.ok, "reasons": _reasons(layer.reasons)}
    if layer.kind == "encrypted":
        out |= {"cipher": layer.cipher, "authenticated": layer.authenticated,
                "legacy": layer.legacy}
    else:
        out["form"] = layer.form
        if layer.verify is not None:
            out["signers"] = _verify_dict(layer.verify)["signers"]
    return out


def _print_reasons(reasons: tuple[tuple[str, str], ...], indent: str) -> None:
    for code, text in reasons:
        print(f"{indent}reason {code}: {text}")


def _print_signers(res: VerifyResult, indent: str) -> None:
    for s in res.signers:
        state = "verified" if s.verified else "NOT verified"
        when = f", signed {s.signing_time.isoformat()}" if s.signing_time else ""
        bound = f", binding: {s.binding}" if s.binding else ""
        print(f"{indent}signer {_subject(s.certificate)}: {state} "
              f"({s.digest_algorithm}{when}{bound})")
        _print_reasons(s.reasons, indent + "  ")


def _print_unwrap(res: UnwrapResult) -> None:
    for n, layer in enumerate(res.layers, 1):
        if layer.kind == "encrypted":
            how = "" if layer.cipher is None else (
                f" ({layer.cipher}, "
                f"{'authenticated' if layer.authenticated else 'NOT authenticated'})")
            print(f"layer {n}: encrypted{how}: {'decrypted' if layer.ok else 'NOT decrypted'}")
            _print_reasons(layer.reasons, "  ")
            continue
        print(f"layer {n}: signed ({layer.form}): {'verified' if layer.ok else 'NOT verified'}")
        own: tuple[tuple[str, str], ...] = layer.reasons
        if layer.verify is not None:
            _print_signers(layer.verify, "  ")
            own = tuple(r for r in own if not any(r in s.reasons for s in layer.verify.signers))
        _print_reasons(own, "  ")
    _print_reasons(tuple(r for r in res.errors
                         if not any(r in layer.reasons for layer in res.layers)), "")
    what = [w for w, on in (("signed", res.signed), ("encrypted", res.encrypted)) if on]
    verdict = "VERIFIED" if res.verified else "NOT VERIFIED"
    print(f"result: {verdict} ({', '.join(what) or 'not S/MIME'})")


# ------------------------------------------------------------------------------------- run


def _emit(args: argparse.Namespace, data: bytes, default_stdout: bool) -> None:
    if args.out:
        try:
            Path(args.out).write_bytes(data)
        except OSError as exc:
            raise UsageError(f"{args.out}: cannot write: {exc.strerror}") from None
    elif default_stdout:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return USAGE
    except SMIMEError as exc:
        print(f"{PROG}: {args.file}: {exc}", file=sys.stderr)
        return FAILED


def _run(args: argparse.Namespace) -> int:
    action = args.smime_command
    if action in ("sign", "encrypt", "protect"):
        mode = {"sign": "sign", "encrypt": "encrypt"}.get(action) or args.mode
        signer = _signer(args, required=mode != "encrypt") if action != "encrypt" else None
        recipients = [c for p in getattr(args, "recipient", []) for c in _certs(p)]
        message = _read(args.file, "message")
        try:
            out = protect(
                message, mode=mode, signer=signer, recipients=recipients,
                form=getattr(args, "form", "detached"), cipher=getattr(args, "cipher", None),
                digest=getattr(args, "digest", "sha256"),
                encrypt_to_self=getattr(args, "encrypt_to_self", False),
            )
        except SMIMEError as exc:
            raise UsageError(str(exc)) from None
        _emit(args, out, default_stdout=True)
        return OK
    if action == "verify":
        trust = _trust_of(args)
        now = _now(args)
        res = verify(_read(args.file, "message"), trust=trust, now=now,
                     from_address=args.from_address, policy=_policy(args),
                     extra_certs=_extra_certs(args, trust), signer_lookup=_signer_lookup(args))
        if args.json:
            print(json.dumps(_verify_dict(res), indent=2))
        else:
            print(f"signature ({res.form}): {'VERIFIED' if res.verified else 'NOT VERIFIED'}")
            _print_signers(res, "  ")
            _print_reasons(tuple(r for r in res.reasons if not any(
                r in s.reasons for s in res.signers)), "  ")
        if res.verified:
            _emit(args, res.content, default_stdout=False)
        return OK if res.verified else FAILED
    if action == "decrypt":
        found = _identity_of(args, required=True)
        assert found is not None
        try:
            dres = decrypt(_read(args.file, "message"), [(found[0], found[1])],
                           allow_3des=args.allow_3des)
        except UnsupportedError as exc:
            # The cipher is named in clear in the envelope: saying which is no oracle.
            print(json.dumps({"decrypted": False, "code": "unsupported-algorithm",
                              "reason": f"unsupported-algorithm: {exc}"}) if args.json
                  else f"NOT decrypted: unsupported-algorithm: {exc}")
            return FAILED
        except DecryptionError as exc:
            print(json.dumps({"decrypted": False, "reason": str(exc)}) if args.json
                  else f"NOT decrypted: {exc}")
            return FAILED
        info = {"decrypted": True, "cipher": dres.cipher, "authenticated": dres.authenticated,
                "legacy": dres.legacy,
                "warnings": _reasons((LEGACY_3DES,)) if dres.legacy else []}
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            auth = "authenticated" if dres.authenticated else "NOT authenticated (CBC)"
            print(f"decrypted ({dres.cipher}, {auth}{', legacy 3DES' if dres.legacy else ''})")
        _emit(args, dres.content, default_stdout=False)
        return OK
    if action == "unwrap":
        found = _identity_of(args, required=False)
        trust = _trust_of(args)
        now = _now(args)
        if args.max_layers < 1:
            raise UsageError("--max-layers must be at least 1")
        ures = unwrap(
            _read(args.file, "message"), keys=[(found[0], found[1])] if found else [],
            trust=trust, now=now, max_layers=args.max_layers, from_address=args.from_address,
            policy=_policy(args), extra_certs=_extra_certs(args, trust),
            signer_lookup=_signer_lookup(args), allow_3des=args.allow_3des,
        )
        if args.json:
            print(json.dumps({
                "verified": ures.verified, "signed": ures.signed, "encrypted": ures.encrypted,
                "binding": _unwrap_binding(ures),
                "signers": [_subject(c) for c in ures.signers], "errors": _reasons(ures.errors),
                "layers": [_layer_dict(layer) for layer in ures.layers],
            }, indent=2))
        else:
            _print_unwrap(ures)
        _emit(args, ures.content, default_stdout=False)
        return OK if ures.verified else FAILED
    return _inspect(args)


def _inspect(args: argparse.Namespace) -> int:
    message = mime.to_crlf(_read(args.file, "message"))
    signed, encrypted = is_smime(message)
    info: dict[str, Any] = {"signed": signed, "encrypted": encrypted}
    head, body = mime.split_entity(mime.split_message(message)[1])
    ctype = re.search(rb"(?im)^content-type:\s*([^;\r\n]+)", head)
    info["content_type"] = ctype.group(1).decode("ascii", "replace").strip() if ctype else None
    if not (signed or encrypted) and media_type(head)[1] in ("certs-only", "signed-data"):
        # A certificate bundle (.p7c, smime-type=certs-only) is listed, not called a signature.
        try:
            parsed = cs.parse_signed(base64.b64decode(re.sub(rb"\s+", b"", body), validate=True))
        except (SMIMEError, ValueError):
            parsed = None
        if parsed is not None and not len(parsed.signed_data["signer_infos"]):
            info |= {"certs_only": True,
                     "certificates": [_subject(c) for c in parsed.certificates]}
    if encrypted:
        try:
            der = base64.b64decode(re.sub(rb"\s+", b"", body), validate=True)
        except ValueError:  # binascii.Error: the body is not base64 at all
            raise MalformedError("the encrypted body is not valid base64") from None
        env = inspect_envelope(der)
        info |= {"envelope": env.kind, "cipher": env.cipher, "recipients": list(env.recipients)}
        if env.cipher in UNSUPPORTED_ALGS.values():
            info["reasons"] = [f"unsupported-algorithm: {env.cipher}: the content is encrypted "
                               "with a cipher that is not supported"]
    elif signed:
        located = mime.locate_signed(message)
        parsed = cs.parse_signed(located.der)
        info |= {"form": located.form,
                 "signers": [_subject(cs.find_signer_cert(si, parsed.certificates))
                             for si in parsed.signed_data["signer_infos"]],
                 "certificates": [_subject(c) for c in parsed.certificates]}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            shown = ", ".join(value) if isinstance(value, list) else value
            print(f"{key.replace('_', ' ')}: {shown}")
    return OK
