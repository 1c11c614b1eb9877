"""Key store benchmark: import N generated certificates, then time lookups (prints figures).

    .venv/bin/python bench/keystore.py [--count 300000] [--backend sqlite|postgres|both]

Lookups are timed on a fresh connection ("cold": first 2000 lookups) and then on the same one
("warm": next 5000), with the 99th percentile latency; then 500 harvests into the full store.

PostgreSQL uses $FILTERLANG_TEST_POSTGRES_URL or a throwaway cluster started with
tests/support/start-postgres.sh (stopped at the end). Generated certificates are cached in the
temp directory between runs (one key pair, many certificates).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from smime.harvest import SignedMessageReport, harvest  # noqa: E402
from smime.keystore import open_keystore  # noqa: E402
from smime.keystore.lookup import find_encryption_key  # noqa: E402

NOW = datetime(2026, 11, 1, tzinfo=UTC)
DOMAINS = 20000
SUBJECT_KEYS = 16


def _address(i: int) -> str:
    return f"user{i}@d{i % DOMAINS}.example"


def generate(count: int) -> list[str]:
    cache = Path(tempfile.gettempdir()) / f"filterlang-bench-certs-v2-{count}.pem"
    if cache.exists():
        return [b + "-----END CERTIFICATE-----\n" for b in cache.read_text().split("-----END CERTIFICATE-----\n")[:-1]]
    # One CA key signs everything and a small pool of subject keys is reused: generating a key
    # pair per certificate would dominate the run, and the store never looks at the key itself.
    key = ec.generate_private_key(ec.SECP256R1())
    subjects = [ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(SUBJECT_KEYS)]
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])
    pems = []
    for i in range(count):
        sans: list[x509.GeneralName] = [x509.RFC822Name(_address(i))]
        if i < DOMAINS:  # one domain certificate per domain
            sans.append(x509.DNSName(f"d{i}.example"))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"user{i}")]))
            .issuer_name(issuer)
            .public_key(subjects[i % SUBJECT_KEYS])
            .serial_number(i + 1)
            .not_valid_before(NOW - timedelta(days=30 + i % 300))
            .not_valid_after(NOW + timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(key, hashes.SHA256())
        )
        pems.append(cert.public_bytes(serialization.Encoding.PEM).decode("ascii"))
    cache.write_text("".join(pems))
    return pems


def harvest_reports(count: int) -> list[SignedMessageReport]:
    """Signed-message reports from `count` new partners, for timing harvests into a full store."""
    ca = ec.generate_private_key(ec.SECP256R1())
    subject = ec.generate_private_key(ec.SECP256R1()).public_key()
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Partner CA")])
    reports = []
    for i in range(count):
        addr = f"h{i}@partner{i}.example"
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, addr)]))
            .issuer_name(issuer)
            .public_key(subject)
            .serial_number(i + 1)
            .not_valid_before(NOW - timedelta(days=10))
            .not_valid_after(NOW + timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(addr)]), critical=False)
            .sign(ca, hashes.SHA256())
        )
        pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        reports.append(SignedMessageReport(pem, True, ("aes256-gcm",), f"<{i}@bench>", addr, NOW))
    return reports


def _timed(store: object, addrs: list[str]) -> tuple[float, float]:
    lat = []
    for a in addrs:
        t = time.perf_counter()
        find_encryption_key(store, a, NOW)  # type: ignore[arg-type]
        lat.append(time.perf_counter() - t)
    return len(lat) / sum(lat), statistics.quantiles(lat, n=100)[98] * 1000


def run(url: str, label: str, pems: list[str], size_of: object) -> None:
    store = open_keystore(url)
    entries = [(i + 1, f"k{i:07d}", pem) for i, pem in enumerate(pems)]
    t = time.perf_counter()
    store.import_public(entries)
    took = time.perf_counter() - t
    store.close()
    print(f"[{label}] imported {len(pems)} certificates in {took:.1f} s ({len(pems) / took:.0f}/s)")
    print(f"[{label}] store size on disk: {size_of() / 1e6:.1f} MB")  # type: ignore[operator]
    rng = random.Random(1)
    n = len(pems)
    for kind, make in (("address", lambda: _address(rng.randrange(n))),
                       ("domain", lambda: f"nobody@d{rng.randrange(min(n, DOMAINS))}.example")):  # fmt: skip
        store = open_keystore(url)  # a fresh connection: "cold"
        cold_rate, cold_p99 = _timed(store, [make() for _ in range(2000)])
        warm_rate, warm_p99 = _timed(store, [make() for _ in range(5000)])
        store.close()
        print(f"[{label}] lookup by {kind}: cold {cold_rate:.0f}/s p99 {cold_p99:.3f} ms; "
              f"warm {warm_rate:.0f}/s p99 {warm_p99:.3f} ms")  # fmt: skip
    # Each harvest is one write transaction (governance query, insert, size-cap check).
    store = open_keystore(url)
    lat = []
    for report in harvest_reports(500):
        t = time.perf_counter()
        if harvest(store, report).action != "stored":
            raise SystemExit(f"[{label}] harvest did not store {report.sender}")
        lat.append(time.perf_counter() - t)
    store.close()
    print(f"[{label}] 500 harvests into the loaded store: {len(lat) / sum(lat):.0f}/s "
          f"p99 {statistics.quantiles(lat, n=100)[98] * 1000:.3f} ms")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=300_000)
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    args = ap.parse_args()
    t = time.perf_counter()
    pems = generate(args.count)
    print(f"generated/loaded {len(pems)} certificates in {time.perf_counter() - t:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend in ("sqlite", "both"):
            db = Path(tmp) / "keys.db"

            def sqlite_size() -> int:
                return sum(p.stat().st_size for p in Path(tmp).glob("keys.db*"))

            run(f"sqlite:///{db}", "sqlite", pems, sqlite_size)
        if args.backend in ("postgres", "both"):
            _postgres(pems)


def _postgres(pems: list[str]) -> None:
    import psycopg

    url = os.environ.get("FILTERLANG_TEST_POSTGRES_URL")
    started = None
    if not url:
        out = subprocess.run([str(ROOT / "tests/support/start-postgres.sh")], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
        env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
        url, started = env["FILTERLANG_TEST_POSTGRES_URL"], env["FILTERLANG_TEST_POSTGRES_DIR"]
    name = f"bench_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    db_url = url.rsplit("/", 1)[0] + "/" + name

    def pg_size() -> int:
        with psycopg.connect(db_url) as conn:
            return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]

    try:
        run(db_url, "postgres", pems, pg_size)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
        if started:
            cmd = [sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1].as_posix(), "-D", started,
                   "stop", "-m", "immediate"]  # fmt: skip
            if os.geteuid() == 0:
                cmd = ["runuser", "-u", "postgres", "--", *cmd]
            subprocess.run(cmd, capture_output=True, check=False)
            # The throwaway cluster holds ~575 MB after a 300k run: remove it, not just stop it.
            shutil.rmtree(Path(started).parent, ignore_errors=True)


if __name__ == "__main__":
    main()
