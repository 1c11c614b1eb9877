"""S/MIME composer benchmark: ops/s beside the bare private-key operation (prints figures).

    .venv/bin/python bench/smime.py [--seconds 0.3] [--openssl-runs 50]

For 4 KB, 100 KB and 1 MB messages with RSA-2048 and P-256 identities: sign, verify (full
path validation), encrypt, decrypt and sign+encrypt through `smime.compose`, each beside the
rate of the bare private-key operation measured in the same run (RSA-2048 / P-256 signing for
sign, RSA decryption / ECDH for decrypt). Then `openssl cms -sign` once per message, the way an
administrator would script it. One process, one core. Targets (issue 4, 4 KB, RSA-2048): sign
at least 50% of the bare signing rate, sign+encrypt at least 40%, and at least 20x openssl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asn1crypto import x509 as ax509  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

from smime import Signer, TrustStore, protect, unwrap  # noqa: E402

NOW = dt.datetime.now(dt.UTC)
SIZES = (("4 KB", 4 * 1024), ("100 KB", 100 * 1024), ("1 MB", 1024 * 1024))
Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _cert(cn: str, key: Key, issuer: tuple[Key, x509.Certificate] | None, ca: bool
          ) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[1].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        # No key usage extension: one certificate signs and receives (dual use).
        b = b.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(cn)]), False)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
    signer = issuer[0] if issuer else key
    return b.sign(signer, hashes.SHA256())


def _message(size: int) -> bytes:
    head = (b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: bench\r\n"
            b"Content-Type: text/plain; charset=us-ascii\r\n\r\n")
    line = b"The quick brown fox jumps over the lazy dog, 0123456789 times over.\r\n"
    return head + (line * (size // len(line) + 1))[:size]


def _rate(fn: Callable[[], object], seconds: float, windows: int = 3) -> float:
    """Best rate over a few short windows: on a shared machine the best window is the one
    least disturbed by other processes, for our code and the bare operation alike."""
    fn()  # warm caches (imports, per-signer templates)
    best = 0.0
    for _ in range(windows):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / windows and n >= 2:
                best = max(best, n / elapsed)
                break
    return best


def _bare(kind: str, key: Key, seconds: float) -> tuple[float, float]:
    """(private-key signing rate, private-key decryption / ECDH rate)."""
    data = b"x" * 32
    if isinstance(key, rsa.RSAPrivateKey):
        rkey = key
        ct = rkey.public_key().encrypt(b"k" * 32, padding.PKCS1v15())
        return (_rate(lambda: rkey.sign(data, padding.PKCS1v15(), hashes.SHA256()), seconds),
                _rate(lambda: rkey.decrypt(ct, padding.PKCS1v15()), seconds))
    ekey = key
    peer = ec.generate_private_key(ec.SECP256R1()).public_key()
    return (_rate(lambda: ekey.sign(data, ec.ECDSA(hashes.SHA256())), seconds),
            _rate(lambda: ekey.exchange(ec.ECDH(), peer), seconds))


def _openssl_rate(tmp: Path, key: Key, cert: x509.Certificate, msg: bytes, runs: int) -> float:
    """`openssl cms -sign` once per message; best of 5 windows, like our own rates."""
    (tmp / "k.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (tmp / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "m.eml").write_bytes(msg)
    cmd = ["openssl", "cms", "-sign", "-in", str(tmp / "m.eml"), "-signer", str(tmp / "c.pem"),
           "-inkey", str(tmp / "k.pem"), "-md", "sha256", "-out", str(tmp / "o.eml")]
    windows = 5
    per_window = max(1, runs // windows)
    best = 0.0
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(per_window):
            subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        best = max(best, per_window / (time.perf_counter() - start))
    return best


def _operations(msg: bytes, signer: Signer, pair: list[tuple[Key, x509.Certificate]],
                trust: TrustStore, bare_sign: float, bare_dec: float, kind: str, dec_name: str
                ) -> list[tuple[str, Callable[[], object], str]]:
    """(name, operation, bare-rate label) for one message size and identity."""
    cert = pair[0][1]
    signed = protect(msg, mode="sign", signer=signer)
    encrypted = protect(msg, mode="encrypt", recipients=[cert])
    return [
        ("sign", lambda: protect(msg, mode="sign", signer=signer),
         f"{kind} sign {bare_sign:,.0f}"),
        ("verify", lambda: unwrap(signed, trust=trust), ""),
        ("encrypt", lambda: protect(msg, mode="encrypt", recipients=[cert]), ""),
        ("decrypt", lambda: unwrap(encrypted, keys=pair, trust=trust),
         f"{dec_name} {bare_dec:,.0f}"),
        ("sign+encrypt",
         lambda: protect(msg, mode="sign-encrypt", signer=signer, recipients=[cert]),
         f"{kind} sign {bare_sign:,.0f}"),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=0.3, help="time per measurement")
    ap.add_argument("--openssl-runs", type=int, default=50)
    args = ap.parse_args()
    t0 = time.perf_counter()
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert("Bench Root", root_key, None, ca=True)
    trust = TrustStore((ax509.Certificate.load(root.public_bytes(serialization.Encoding.DER)),))
    identities: dict[str, tuple[Key, x509.Certificate]] = {}
    for kind, key in (("RSA-2048", rsa.generate_private_key(public_exponent=65537,
                                                           key_size=2048)),
                      ("P-256", ec.generate_private_key(ec.SECP256R1()))):
        identities[kind] = (key, _cert("alice@example.com", key, (root_key, root), ca=False))

    results: dict[tuple[str, str, str], float] = {}
    print(f"{'key':<9}{'size':<8}{'operation':<14}{'ops/s':>10}   bare private-key op (ops/s)")
    for kind, (key, cert) in identities.items():
        bare_sign, bare_dec = _bare(kind, key, args.seconds)
        dec_name = "RSA decrypt" if kind == "RSA-2048" else "ECDH"
        signer = Signer(key, cert)
        pair = [(key, cert)]
        for size_name, size in SIZES:
            msg = _message(size)
            ops = _operations(msg, signer, pair, trust, bare_sign, bare_dec, kind, dec_name)
            for name, fn, bare in ops:
                rate = _rate(fn, args.seconds)
                results[(kind, size_name, name)] = rate
                ref = bare_sign if "sign" in name else bare_dec if name == "decrypt" else None
                share = f" ({rate / ref:.0%})" if ref and bare else ""
                print(f"{kind:<9}{size_name:<8}{name:<14}{rate:>10,.1f}   {bare}{share}")

    print()
    # The targets compare rates measured side by side, interleaved, best window of each.
    key, cert = identities["RSA-2048"]
    signer, msg = Signer(key, cert), _message(4096)
    data = b"x" * 32
    bare = sign = both = 0.0
    for _ in range(5):
        bare = max(bare, _rate(lambda: key.sign(data, padding.PKCS1v15(), hashes.SHA256()),
                               args.seconds, 1))
        sign = max(sign, _rate(lambda: protect(msg, mode="sign", signer=signer),
                               args.seconds, 1))
        both = max(both, _rate(lambda: protect(msg, mode="sign-encrypt", signer=signer,
                                               recipients=[cert]), args.seconds, 1))
    verdict = {True: "PASS", False: "MISS"}
    print(f"targets (RSA-2048, 4 KB, interleaved best of 5): bare sign {bare:,.1f}/s")
    print(f"target sign >= 50% of bare RSA-2048 sign: {sign:,.1f} / {bare:,.1f} = "
          f"{sign / bare:.0%}  {verdict[sign >= 0.5 * bare]}")
    print(f"target sign+encrypt >= 40% of bare RSA-2048 sign: {both:,.1f} / {bare:,.1f} = "
          f"{both / bare:.0%}  {verdict[both >= 0.4 * bare]}")
    if shutil.which("openssl") is None:
        print("target >= 20x openssl cms -sign per message: SKIPPED (openssl not installed)")
    else:
        ours = {"RSA-2048": sign, "P-256": results[("P-256", "4 KB", "sign")]}
        for kind, (key, cert) in identities.items():
            with tempfile.TemporaryDirectory() as tmp:
                ossl = _openssl_rate(Path(tmp), key, cert, _message(4096), args.openssl_runs)
            print(f"openssl cms -sign {kind}, one process per 4 KB message "
                  f"({args.openssl_runs} runs, best of 5 windows): {ossl:,.1f} msg/s")
            print(f"target >= 20x openssl per message ({kind}): {ours[kind]:,.1f} / "
                  f"{ossl:,.1f} = {ours[kind] / ossl:.1f}x  {verdict[ours[kind] >= 20 * ossl]}")
        print(f"(bound for RSA-2048: bare sign {bare:,.1f}/s / 20 = {bare / 20:,.1f} msg/s; an "
              "openssl process faster than that cannot be beaten 20x by any RSA-2048 signer)")
    print(f"(total {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
