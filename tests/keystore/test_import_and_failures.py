"""Batched import, schema upgrade and an unreachable store, on SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from certgen import NOW, make_cert

from runtime.commands.cli import main
from smime.harvest import SignedMessageReport, harvest
from smime.keystore import (
    ImportFileError,
    KeyRecord,
    KeyStore,
    KeyStoreUnavailableError,
    _sqlstore,
    exportfile,
    open_keystore,
)
from smime.keystore._schema import VERSION
from smime.keystore.lookup import find_encryption_key, verification_keys


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    # Several batches and name probes with a handful of keys: the same code paths as 300k.
    monkeypatch.setattr(_sqlstore, "_IMPORT_BATCH", 2)
    monkeypatch.setattr(_sqlstore, "_PROBE", 3)


@pytest.mark.usefixtures("small_batches")
def test_import_in_batches_keeps_every_key_findable(store: KeyStore) -> None:
    pems = [make_cert((f"u{i}@d{i}.example",), not_before=NOW - timedelta(days=10)) for i in range(7)]
    store.add_public("k1", pems[1])  # already there with the same certificate: skipped
    entries = [(10 * i + 3, f"k{i}", pem) for i, pem in enumerate(pems)]
    progress: list[tuple[int, int]] = []
    assert store.import_public(entries, progress=lambda done, total: progress.append((done, total))) == 6
    assert progress[-1] == (7, 7)
    assert [k.name for k in store.list_keys()] == [f"k{i}" for i in range(7)]
    for i in range(7):
        res = find_encryption_key(store, f"U{i}@d{i}.example", NOW)
        assert res.chosen is not None and res.chosen.name == f"k{i}" and res.chosen.obtained in ("imported", "added")
    assert sorted(e.name for e in store.audit() if e.action == "import") == [f"k{i}" for i in range(7) if i != 1]
    # Ids were reserved properly: ordinary inserts after a bulk load still work.
    store.add_public("later", make_cert(("later@example.com",)))
    assert store.get("later").id > max(k.id for k in store.list_keys() if k.name != "later")
    text = exportfile.dump(store.list_keys())
    assert exportfile.dump(exportfile_round_trip(store, text)) == text


def exportfile_round_trip(store: KeyStore, text: str) -> list[KeyRecord]:
    for key in store.list_keys():
        store.remove(key.name)
    store.import_public(exportfile.parse(text))
    return store.list_keys()


@pytest.mark.usefixtures("small_batches")
@pytest.mark.parametrize(
    ("case", "line", "reason"),
    [
        ("existing-name-other-key", 33, "a different public key named 'taken' already exists"),
        ("same-name-twice-other-key", 43, "duplicate name 'k1' with a different certificate (first on line 13)"),
        ("bad-name", 23, "invalid key name"),
        ("unparsable", 33, "not a readable certificate"),
    ],
)
def test_import_failure_changes_nothing_and_names_the_line(store: KeyStore, case: str, line: int, reason: str) -> None:
    store.add_public("taken", make_cert(("taken@example.com",)))
    before = (store.list_keys(), store.audit())
    entries = [(10 * i + 3, f"k{i}", make_cert((f"u{i}@example.com",))) for i in range(6)]
    if case == "existing-name-other-key":
        entries[3] = (33, "taken", make_cert(("other@example.com",)))
    elif case == "same-name-twice-other-key":
        entries[4] = (43, "k1", make_cert(("other@example.com",)))
    elif case == "bad-name":
        entries[2] = (23, " spaced", entries[2][2])
    else:
        body = entries[3][2].splitlines()
        body[3] = "A" * 64
        entries[3] = (33, "k3", "\n".join(body) + "\n")
    with pytest.raises(ImportFileError) as err:
        store.import_public(entries)
    assert err.value.line == line and reason in err.value.reason
    assert (store.list_keys(), store.audit()) == before


def test_same_entry_twice_in_one_import_is_added_once(store: KeyStore) -> None:
    pem = make_cert(("twice@example.com",))
    assert store.import_public([(3, "twice", pem), (9, "twice", pem)]) == 1
    assert [k.name for k in store.list_keys()] == ["twice"]


def _raw(url: str) -> tuple[object, str]:
    if url.startswith("sqlite:///"):
        return sqlite3.connect(url[len("sqlite:///") :], isolation_level=None), "?"
    import psycopg

    return psycopg.connect(url, autocommit=True), "%s"


def test_upgrade_from_schema_1_fills_in_key_usage(store_url: str) -> None:
    store = open_keystore(store_url)
    store.add_public("sign-only", make_cert(("s@example.com",), encrypt=False))
    store.add_public("both", make_cert(("b@example.com",)))
    report = SignedMessageReport(make_cert(("h@partner.com",)), True, (), "<m1>", "h@partner.com", NOW)
    assert harvest(store, report).action == "stored"
    size = store.harvested_size()
    store.close()
    conn, _ = _raw(store_url)  # put the store back to what schema step 1 wrote
    conn.execute("ALTER TABLE keys DROP COLUMN can_sign")  # type: ignore[attr-defined]
    conn.execute("DROP TABLE harvested_total")  # type: ignore[attr-defined]
    conn.execute("UPDATE schema_version SET version = 1")  # type: ignore[attr-defined]
    conn.close()  # type: ignore[attr-defined]
    store = open_keystore(store_url)
    assert store.schema_version() == VERSION  # type: ignore[attr-defined]
    assert {k.name: (k.can_encrypt, k.can_sign) for k in store.list_keys()} == {
        "sign-only": (False, True), "both": (True, True),
    }  # fmt: skip
    assert [k.name for k in verification_keys(store, "s@example.com", NOW)] == ["sign-only"]
    assert store.harvested_size() == size > 0
    store.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_postgres_is_a_temporary_failure(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql://gw:secret@127.0.0.1:{_closed_port()}/keys"
    with pytest.raises(KeyStoreUnavailableError) as err:
        open_keystore(url)
    assert "secret" not in str(err.value)
    assert main(["keys", "--store", url, "lookup", "bob@example.com"]) == 1
    out = capsys.readouterr()
    assert "unavailable" in out.err or "cannot connect" in out.err
    assert "Traceback" not in out.err and "secret" not in out.err


@pytest.mark.postgres
def test_lost_postgres_connection_fails_temporarily_then_heals(postgres_url: str) -> None:
    from conftest import _fresh_postgres

    url = _fresh_postgres(postgres_url)
    store = open_keystore(url)
    store.add_public("bob", make_cert(("bob@example.com",)))
    _kill_connections(url)
    report = SignedMessageReport(make_cert(("carol@partner.com",)), True, (), "<m1>", "carol@partner.com", NOW)
    out = harvest(store, report)  # a side effect of receiving mail: never raises
    assert out.action == "skipped" and out.reason.startswith("key store unavailable")
    res = find_encryption_key(store, "bob@example.com", NOW)  # reconnected by itself
    assert res.chosen is not None and res.chosen.name == "bob"
    _kill_connections(url)
    with pytest.raises(KeyStoreUnavailableError):
        find_encryption_key(store, "bob@example.com", NOW)
    assert harvest(store, report).action == "stored"
    store.close()


def _kill_connections(url: str) -> None:
    conn, _ = _raw(url)
    conn.execute(  # type: ignore[attr-defined]
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    conn.close()  # type: ignore[attr-defined]


def _pem_of(der: bytes) -> str:
    import base64

    body = base64.b64encode(der).decode("ascii")
    return ("-----BEGIN CERTIFICATE-----\n" + "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
            + "\n-----END CERTIFICATE-----\n")


def _duplicate_extension() -> str:
    """A certificate whose subjectAltName extension appears twice (RFC 5280 4.2 forbids it)."""
    from asn1crypto import pem
    from asn1crypto import x509 as ax509

    cert = ax509.Certificate.load(pem.unarmor(make_cert().encode())[2])
    tbs = cert["tbs_certificate"]
    exts = tbs["extensions"]
    exts.append(exts[0].copy())
    tbs["extensions"] = exts
    cert["tbs_certificate"] = ax509.TbsCertificate.load(tbs.dump(force=True))
    return _pem_of(cert.dump(force=True))


def _version_99() -> str:
    """A certificate whose version field says 99: cryptography raises InvalidVersion lazily."""
    from asn1crypto import pem

    der = pem.unarmor(make_cert().encode())[2]
    return _pem_of(der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x62", 1))


def _bad_subject() -> str:
    """A subject whose UTF8String common name is not UTF-8: cryptography loads the
    certificate and raises only when the subject is read."""
    from asn1crypto import pem

    der = pem.unarmor(make_cert().encode())[2]
    cn = b"\x0c\x11alice@example.com"
    assert cn in der
    return _pem_of(der.replace(cn, b"\x0c\x11alice\xff\xfeexample.co", 1))


@pytest.mark.parametrize("bad", [_duplicate_extension, _version_99, _bad_subject],
                         ids=["duplicate-extension", "bad-version", "malformed-subject"])
def test_keys_import_of_an_unreadable_certificate_is_one_error(
        tmp_path: Path, bad: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`filterlang keys import` on a certificate that cryptography only rejects when a field
    is first read: one line naming the file's line, exit 1, no traceback, nothing imported."""
    url = f"sqlite:///{tmp_path}/keys.sqlite3"
    export = tmp_path / "keys.txt"
    export.write_text(f"{exportfile.HEADER}\n\nname: good\n{make_cert(('g@example.com',))}"
                      f"\nname: bad\n{bad()}", encoding="ascii")
    code = main(["keys", "--store", url, "import", str(export)])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert "line" in err and "not a readable certificate" in err
    assert main(["keys", "--store", url, "list"]) == 0
    assert capsys.readouterr().out.strip() == ""
