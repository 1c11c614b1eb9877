"""`filterlang smime` as a subprocess on what real clients send (issue 14): signer certificates
left out (--certfile, --store), --legacy and --at-signing-time, RC2 named in decrypt and
inspect, a certificate bundle in inspect, the mbox line in decrypt."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from asn1crypto import cms
from compose_util import MSG, ca, recipient, signer
from cryptography.hazmat.primitives.asymmetric import rsa
from keys_util import cert_pem, key_pem
from pki import issue

from smime import Signer, protect

FILTERLANG = Path(sys.executable).parent / "filterlang"
SIGNED_AT = dt.datetime(2026, 6, 2, 12, 0, tzinfo=dt.UTC)
NOW = "2026-06-03T00:00:00"


def _cli(*args: str | Path) -> tuple[int, dict]:
    proc = subprocess.run([str(FILTERLANG), "smime", *map(str, args), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _codes(data: dict) -> set[str]:
    return {r["code"] for r in data.get("reasons", ())} | {
        r["code"] for s in data.get("signers", ()) for r in s["reasons"]}


def _der(message: bytes) -> bytes:
    return base64.b64decode(re.sub(rb"\s+", b"", message.partition(b"\r\n\r\n")[2]))


def _with_der(message: bytes, der: bytes) -> bytes:
    head = message.partition(b"\r\n\r\n")[0]
    return head + b"\r\n\r\n" + base64.encodebytes(der).replace(b"\n", b"\r\n")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root.pem").write_bytes(ca().root.pem)
    return tmp_path / "root.pem"


def test_signer_certificate_from_certfile_or_key_store(tmp_path: Path, root: Path) -> None:
    msg = protect(MSG, mode="sign", signer=signer("p256"), form="opaque", now=SIGNED_AT)
    info = cms.ContentInfo.load(_der(msg))
    info["content"]["certificates"] = cms.CertificateSet([])
    bare = tmp_path / "bare.eml"
    bare.write_bytes(_with_der(msg, info.dump(force=True)))
    rc, data = _cli("verify", bare, "--trust", root, "--now", NOW)
    assert (rc, _codes(data)) == (1, {"no-signer-certificate"})

    alice = signer("p256")
    (tmp_path / "alice.pem").write_bytes(cert_pem(alice.cert))
    (tmp_path / "inter.pem").write_bytes(ca().inter.pem)
    rc, data = _cli("verify", bare, "--trust", root, "--now", NOW,
                    "--certfile", tmp_path / "alice.pem", "--certfile", tmp_path / "inter.pem")
    assert (rc, data["verified"]) == (0, True)

    # The key store: the operator added Alice's certificate; the intermediate is an anchor.
    store = f"sqlite:///{tmp_path}/keys.db"
    subprocess.run([str(FILTERLANG), "keys", "--store", store, "add", "alice",
                    str(tmp_path / "alice.pem")], check=True, capture_output=True)
    rc, data = _cli("unwrap", bare, "--trust", root, "--trust", tmp_path / "inter.pem",
                    "--now", NOW, "--store", store)
    assert (rc, data["verified"]) == (0, True)


def _old_signer(**kw: object) -> Signer:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    who = issue("alice@example.com", ca().inter, emails=["alice@example.com"], key=key,
                **kw)  # type: ignore[arg-type]
    return Signer(who.key, who.cert, (ca().inter.cert,))


def test_legacy_and_at_signing_time(tmp_path: Path, root: Path) -> None:
    old = tmp_path / "old.eml"
    old.write_bytes(protect(MSG, mode="sign", signer=_old_signer(), now=SIGNED_AT))
    rc, data = _cli("verify", old, "--trust", root, "--now", NOW)
    assert (rc, _codes(data)) == (1, {"weak-key"})
    rc, data = _cli("verify", old, "--trust", root, "--now", NOW, "--legacy")
    assert (rc, data["verified"], _codes(data)) == (0, True, {"legacy-algorithm"})

    # Expired since: valid when signed, and read as of then only when asked.
    expired = tmp_path / "expired.eml"
    expired.write_bytes(protect(MSG, mode="sign", now=SIGNED_AT, signer=_old_signer(
        not_after=SIGNED_AT + dt.timedelta(hours=1))))
    rc, data = _cli("unwrap", expired, "--trust", root, "--now", NOW, "--legacy")
    assert rc == 1 and "expired" in {r["code"] for r in data["errors"]}
    rc, data = _cli("unwrap", expired, "--trust", root, "--now", NOW, "--legacy",
                    "--at-signing-time")
    assert (rc, data["verified"]) == (0, True)


def test_rc2_is_named_by_decrypt_and_inspect(tmp_path: Path) -> None:
    key, cert = recipient("p256")
    (tmp_path / "k.pem").write_bytes(key_pem(key))
    (tmp_path / "c.pem").write_bytes(cert_pem(cert))
    msg = protect(MSG, mode="encrypt", recipients=[cert], cipher="aes128-cbc")
    info = cms.ContentInfo.load(_der(msg))
    info["content"]["encrypted_content_info"]["content_encryption_algorithm"]["algorithm"] = (
        "1.2.840.113549.3.2")
    rc2 = tmp_path / "rc2.eml"
    rc2.write_bytes(_with_der(msg, info.dump(force=True)))
    rc, data = _cli("decrypt", rc2, "--key", tmp_path / "k.pem", "--cert", tmp_path / "c.pem")
    assert (rc, data["decrypted"], data["code"]) == (1, False, "unsupported-algorithm")
    assert data["reason"].startswith("unsupported-algorithm: rc2-cbc: ")
    rc, data = _cli("inspect", rc2)
    assert (rc, data["cipher"]) == (0, "rc2-cbc")
    assert data["reasons"][0].startswith("unsupported-algorithm: rc2-cbc")


def test_inspect_lists_a_certificate_bundle_as_no_signature(tmp_path: Path) -> None:
    msg = protect(MSG, mode="sign", signer=signer("p256"), form="opaque", now=SIGNED_AT)
    info = cms.ContentInfo.load(_der(msg))
    info["content"]["signer_infos"] = cms.SignerInfos([])
    p7c = tmp_path / "certs.eml"
    p7c.write_bytes(_with_der(msg, info.dump(force=True)).replace(
        b"smime-type=signed-data", b"smime-type=certs-only"))
    rc, data = _cli("inspect", p7c)
    assert (rc, data["signed"], data["certs_only"]) == (0, False, True)
    assert len(data["certificates"]) == 2


def test_decrypt_reads_an_mbox_file(tmp_path: Path) -> None:
    key, cert = recipient("p256")
    (tmp_path / "k.pem").write_bytes(key_pem(key))
    (tmp_path / "c.pem").write_bytes(cert_pem(cert))
    mbox = tmp_path / "one.mbox"
    mbox.write_bytes(b"From alice@example.com Sat Apr 13 01:54:30 2013\n"
                     + protect(MSG, mode="encrypt", recipients=[cert]).replace(b"\r\n", b"\n"))
    out = tmp_path / "out.eml"
    rc, data = _cli("decrypt", mbox, "--key", tmp_path / "k.pem", "--cert", tmp_path / "c.pem",
                    "-o", out)
    assert (rc, data["decrypted"]) == (0, True)
    assert b"Revenue is up." in out.read_bytes()
