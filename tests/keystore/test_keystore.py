"""The key store's behaviour, identical on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import multiprocessing
from datetime import timedelta
from pathlib import Path

import pytest
from certgen import NOW, make_cert

from runtime.commands.cli import main
from smime.harvest import HarvestPolicy, JsonLinesAlertSink, SignedMessageReport, harvest
from smime.keystore import (
    DuplicateKeyError,
    ImportFileError,
    KeyRecord,
    KeyStore,
    exportfile,
    open_keystore,
)
from smime.keystore._cert import parse_pem
from smime.keystore._schema import VERSION
from smime.keystore.lookup import find_encryption_key, verification_keys


def _report(pem: str, sender: str = "alice@partner.com", *, verified: bool = True,
            msg: str = "<m1@partner.com>", hours: float = 0) -> SignedMessageReport:  # fmt: skip
    return SignedMessageReport(pem, verified, ("aes256-gcm", "aes128-cbc"), msg, sender,
                               NOW + timedelta(hours=hours))  # fmt: skip


def test_schema_is_current_and_reopen_is_idempotent(store_url: str) -> None:
    for _ in range(2):
        s = open_keystore(store_url)
        assert s.schema_version() == VERSION  # type: ignore[attr-defined]
        s.close()


def test_add_list_search_show_remove(store: KeyStore) -> None:
    store.add_public("alice", make_cert(("alice@example.com",)))
    store.add_public("bob", make_cert(("bob@other.org",)))
    assert [k.name for k in store.list_keys()] == ["alice", "bob"]
    assert [k.name for k in store.list_keys(query="other.org")] == ["bob"]
    assert [k.name for k in store.list_keys(query="alice@example.com")] == ["alice"]
    fp = store.get("alice").fingerprint
    assert [k.name for k in store.list_keys(query=fp[:12])] == ["alice"]
    assert store.get(fp).name == "alice"
    with pytest.raises(DuplicateKeyError):
        store.add_public("alice", make_cert(("x@example.com",)))
    store.remove("alice")
    assert [k.name for k in store.list_keys()] == ["bob"]
    assert [e.action for e in store.audit()] == ["remove", "add", "add"]


def test_export_import_round_trip_is_exact(store: KeyStore, tmp_path: Path) -> None:
    for i in range(5):
        store.add_public(f"k{i}", make_cert((f"u{i}@example.com",)))
    text = exportfile.dump(store.list_keys())
    other = open_keystore(f"sqlite:///{tmp_path}/other.db")
    assert other.import_public(exportfile.parse(text)) == 5
    assert exportfile.dump(other.list_keys()) == text
    assert store.import_public(exportfile.parse(text)) == 0  # same keys again: nothing new


def _good_file() -> list[str]:
    body = exportfile.dump([]).splitlines()
    for name in ("a", "b"):
        body += ["", f"name: {name}", *make_cert((f"{name}@example.com",)).splitlines()]
    return body


@pytest.mark.parametrize(
    ("damage", "line"),
    [
        ("truncated", 14),
        ("garbage", 15),
        ("duplicate", 14),
        ("unparsable", 14),
    ],
)
def test_malformed_import_changes_nothing_and_names_the_line(store: KeyStore, damage: str, line: int) -> None:
    lines = _good_file()  # header, "", name a (3), PEM 4..13, "", name b (15), PEM 16..
    b = lines.index("name: b")
    if damage == "truncated":
        lines = lines[: len(lines) - 1]
        line = b + 2
    elif damage == "garbage":
        lines.insert(b, "this is not a key")
        line = b + 1
    elif damage == "duplicate":
        lines[b] = "name: a"
        line = b + 1
    else:
        lines[b + 3] = "A" * 64
        line = b + 1
    store.add_public("existing", make_cert(("e@example.com",)))
    before = (store.list_keys(), store.audit())
    with pytest.raises(ImportFileError) as err:
        store.import_public(exportfile.parse("\n".join(lines) + "\n"))
    assert err.value.line == line
    assert (store.list_keys(), store.audit()) == before


def test_lookup_prefers_address_then_domain_then_wildcard(store: KeyStore) -> None:
    store.add_public("wild", make_cert((), ("*.example.com",)))
    assert find_encryption_key(store, "x@mail.example.com", NOW).chosen.name == "wild"  # type: ignore[union-attr]
    store.add_public("dom", make_cert((), ("mail.example.com",)))
    assert find_encryption_key(store, "x@mail.example.com", NOW).chosen.name == "dom"  # type: ignore[union-attr]
    store.add_public("exact", make_cert(("x@mail.example.com",)))
    res = find_encryption_key(store, "X@Mail.Example.com", NOW)
    assert res.chosen is not None and res.chosen.name == "exact"
    assert "address" in res.reason and len(res.candidates) == 3


def test_wildcard_lookup_covers_one_label_only(store: KeyStore) -> None:
    store.add_public("wild", make_cert((), ("*.example.com",)))
    store.add_public("tld", make_cert((), ("*.com",)))
    assert find_encryption_key(store, "x@mail.example.com", NOW).chosen.name == "wild"  # type: ignore[union-attr]
    for address in ("x@a.mail.example.com", "x@example.com", "x@other.com"):
        assert find_encryption_key(store, address, NOW).chosen is None, address


DOMAIN = HarvestPolicy(domain_certificates=True)


def test_domain_certificate_is_harvested_under_its_domain_and_found_for_its_senders(
        store: KeyStore) -> None:
    gateway = make_cert((), ("partner.com",), self_signed=True)
    # Without the policy a domain certificate names no sender; with it, it is kept under the
    # domain, and key lookup for any address of that domain falls back to it.
    assert harvest(store, _report(gateway)).action == "skipped"
    out = harvest(store, _report(gateway), DOMAIN)
    assert (out.action, out.reason) == ("stored", "first key for this domain")
    assert [k.name for k in store.list_keys(kind="harvested")] == ["partner.com"]
    res = find_encryption_key(store, "bob@partner.com", NOW)
    assert res.chosen is not None and res.chosen.name == "partner.com"
    assert "domain" in res.reason
    assert find_encryption_key(store, "bob@other.com", NOW).chosen is None
    # Another domain's sender is not vouched for by this certificate.
    assert harvest(store, _report(gateway, "eve@evil.com", msg="<e1>"), DOMAIN).action == "skipped"


def test_wildcard_domain_certificate_is_kept_under_the_wildcard(store: KeyStore) -> None:
    gateway = make_cert((), ("*.partner.com",))
    assert harvest(store, _report(gateway, "a@mail.partner.com"), DOMAIN).action == "stored"
    assert [k.name for k in store.list_keys(kind="harvested")] == ["*.partner.com"]
    assert find_encryption_key(store, "b@eu.partner.com", NOW).chosen is not None
    assert harvest(store, _report(gateway, "a@x.mail.partner.com", msg="<m2>"),
                   DOMAIN).action == "skipped"


def test_domain_key_churn_is_governed_like_an_address(store: KeyStore) -> None:
    genuine = make_cert((), ("partner.com",), not_before=NOW - timedelta(days=60))
    assert harvest(store, _report(genuine), DOMAIN).action == "stored"
    # A different key for the domain within 48 hours: held for review, the old one stays.
    forged = make_cert((), ("partner.com",), not_before=NOW - timedelta(hours=1), other_key=True)
    out = harvest(store, _report(forged, "ceo@partner.com", msg="<evil@x>", hours=5), DOMAIN)
    assert out.action == "held" and "partner.com" in out.reason
    assert store.get("partner.com", kind="harvested").pem.strip() == genuine.strip()
    assert store.pending()[0].address == "partner.com"
    assert store.alerts()[0].kind == "key-change-held"
    # After the window a newer certificate replaces it.
    newer = make_cert((), ("partner.com",), not_before=NOW - timedelta(minutes=30))
    assert harvest(store, _report(newer, msg="<m3>", hours=60), DOMAIN).action == "replaced"


def test_lookup_refuses_invalid_keys_and_picks_newest(store: KeyStore) -> None:
    addr = ("carol@example.com",)
    store.add_public("expired", make_cert(addr, not_before=NOW - timedelta(days=400), days=30))
    store.add_public("future", make_cert(addr, not_before=NOW + timedelta(days=3)))
    store.add_public("sign-only", make_cert(addr, encrypt=False, not_before=NOW - timedelta(days=1)))
    store.add_public("revoked", make_cert(addr, not_before=NOW - timedelta(days=2)))
    store.set_revoked(store.get("revoked").fingerprint)
    res = find_encryption_key(store, "carol@example.com", NOW)
    assert res.chosen is None
    assert {c.key.name: c.refused for c in res.candidates} == {
        "expired": "expired", "future": "not yet valid",
        "sign-only": "key usage does not allow encryption", "revoked": "revoked",
    }  # fmt: skip
    store.add_public("old", make_cert(addr, not_before=NOW - timedelta(days=20)))
    store.add_public("new", make_cert(addr, not_before=NOW - timedelta(days=10)))
    assert find_encryption_key(store, "carol@example.com", NOW).chosen.name == "new"  # type: ignore[union-attr]
    assert {k.name for k in verification_keys(store, "carol@example.com", NOW)} == {"old", "new", "sign-only"}


@pytest.mark.parametrize(
    ("kwargs", "policy", "action"),
    [
        ({}, HarvestPolicy(), "stored"),
        ({"verified": False}, HarvestPolicy(), "skipped"),
        ({"verified": False}, HarvestPolicy(harvest_failed_verification=True), "stored"),
        # Verified, a self-signed signer was a configured trust anchor (a pinned partner
        # gateway); unverified, it vouches for nothing.
        ({"self_signed": True}, HarvestPolicy(), "stored"),
        ({"self_signed": True, "verified": False}, HarvestPolicy(harvest_failed_verification=True),
         "skipped"),
        ({"expired": True}, HarvestPolicy(), "skipped"),
        ({}, HarvestPolicy(harvest=False), "skipped"),
    ],
)
def test_harvest_defaults_and_options(store: KeyStore, kwargs: dict[str, bool], policy: HarvestPolicy, action: str) -> None:
    pem = make_cert(("alice@partner.com",), self_signed=kwargs.get("self_signed", False),
                    not_before=NOW - timedelta(days=500 if kwargs.get("expired") else 10))  # fmt: skip
    out = harvest(store, _report(pem, verified=kwargs.get("verified", True)), policy)
    assert out.action == action
    keys = store.list_keys(kind="harvested")
    assert len(keys) == (action == "stored")
    if keys:
        k = keys[0]
        assert k.capabilities == ("aes256-gcm", "aes128-cbc") and k.source_message_id == "<m1@partner.com>"
        assert k.obtained == ("harvested" if kwargs.get("verified", True) else "harvested-unverified")


def _sizes_agree(store: KeyStore) -> bool:
    """The running total the size cap uses equals the sum over the stored harvested keys."""
    rows = store._q("SELECT coalesce(sum(size), 0) FROM keys WHERE kind = 'harvested'")  # type: ignore[attr-defined]
    return store.harvested_size() == rows[0][0]


def test_updated_key_replaces_after_the_window(store: KeyStore) -> None:
    harvest(store, _report(make_cert(("alice@partner.com",), not_before=NOW - timedelta(days=60))))
    newer = make_cert(("alice@partner.com",), not_before=NOW - timedelta(days=1))
    assert harvest(store, _report(newer, msg="<m2>", hours=49)).action == "replaced"
    assert harvest(store, _report(newer, msg="<m3>", hours=50)).action == "refreshed"
    off = HarvestPolicy(harvest_updated_keys=False)
    newest = make_cert(("alice@partner.com",), not_before=NOW)
    assert harvest(store, _report(newest, msg="<m4>", hours=200), off).action == "skipped"
    assert [e.action for e in store.audit()][:2] == ["replace", "harvest"]
    assert _sizes_agree(store)


def test_poisoning_is_held_alerted_and_reviewable(store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = open_keystore(store_url)
    sink = JsonLinesAlertSink(tmp_path / "alerts.log")
    genuine = make_cert(("alice@partner.com",), not_before=NOW - timedelta(days=60))
    assert harvest(store, _report(genuine), sinks=[sink]).action == "stored"
    forged = make_cert(("alice@partner.com",), not_before=NOW - timedelta(hours=1), other_key=True)
    out = harvest(store, _report(forged, msg="<evil@x>", hours=5), sinks=[sink])
    assert out.action == "held"
    assert store.get("alice@partner.com", kind="harvested").fingerprint == store.list_keys(kind="harvested")[0].fingerprint
    assert store.list_keys(kind="harvested")[0].pem.strip() == genuine.strip()
    alert = json.loads((tmp_path / "alerts.log").read_text().splitlines()[0])
    assert "alice@partner.com" in alert["message"]
    assert store.alerts()[0].kind == "key-change-held" and "alice@partner.com" in store.alerts()[0].message
    store.close()
    assert main(["keys", "--store", store_url, "--json", "pending"]) == 0
    pending = json.loads(capsys.readouterr().out)
    assert len(pending) == 1 and pending[0]["address"] == "alice@partner.com"
    assert main(["keys", "--store", store_url, "reject", str(pending[0]["id"])]) == 0
    assert main(["keys", "--store", store_url, "--json", "pending"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1]) == []


def test_accept_pin_promote(store: KeyStore) -> None:
    harvest(store, _report(make_cert(("alice@partner.com",), not_before=NOW - timedelta(days=60))))
    store.set_pinned("alice@partner.com", True)
    newer = make_cert(("alice@partner.com",), not_before=NOW - timedelta(days=1))
    out = harvest(store, _report(newer, msg="<m2>", hours=100))
    assert out.action == "held" and "pinned" in out.reason
    store.resolve_pending(store.pending()[0].id, accept=True)
    key = store.get("alice@partner.com", kind="harvested")
    assert key.pinned and key.pem.strip() == newer.strip() and store.pending() == []
    promoted = store.promote("alice@partner.com", new_name="alice")
    assert promoted.kind == "public" and promoted.fingerprint == key.fingerprint
    assert {"pin", "accept", "promote", "held"} <= {e.action for e in store.audit()}
    assert _sizes_agree(store)
    store.remove("alice@partner.com", kind="harvested")
    assert store.harvested_size() == 0 and _sizes_agree(store)


def test_size_cap_evicts_least_recently_used_unpinned(store: KeyStore) -> None:
    for i in range(3):
        harvest(store, _report(make_cert((f"u{i}@p{i}.com",)), f"u{i}@p{i}.com", msg=f"<{i}>", hours=i))
    store.set_pinned("u0@p0.com", True)
    policy = HarvestPolicy(size_cap_bytes=store.harvested_size() + 100)  # room for three keys
    out = harvest(store, _report(make_cert(("u9@p9.com",)), "u9@p9.com", msg="<9>", hours=9), policy)
    assert out.alerts and "evicted" in out.alerts[0]
    names = {k.name for k in store.list_keys(kind="harvested")}
    assert "u0@p0.com" in names and "u1@p1.com" not in names and "u9@p9.com" in names
    assert store.alerts()[0].kind == "size-cap"
    assert _sizes_agree(store) and store.harvested_size() <= policy.size_cap_bytes


def test_a_full_store_evicts_below_the_cap_once_not_on_every_harvest(store: KeyStore) -> None:
    def partner(i: int) -> SignedMessageReport:
        return _report(make_cert((f"p{i}@d{i}.com",)), f"p{i}@d{i}.com", msg=f"<p{i}>", hours=i / 100)

    for i in range(300):
        harvest(store, partner(i))
    policy = HarvestPolicy(size_cap_bytes=store.harvested_size())  # exactly full
    first = harvest(store, partner(300), policy)
    assert len(first.alerts) == 1 and store.harvested_size() <= policy.size_cap_bytes * 99 // 100
    evicted = {e.name for e in store.audit(1000) if e.action == "evict"}
    assert {"p0@d0.com", "p1@d1.com"} <= evicted and "p299@d299.com" not in evicted  # oldest first
    assert [harvest(store, partner(i), policy).alerts for i in (301, 302)] == [(), ()]
    assert _sizes_agree(store)


def _whole(key: KeyRecord, address: str) -> bool:
    """A key read back is complete: its PEM parses to its fingerprint and names the address."""
    info = parse_pem(key.pem)
    return info.fingerprint == key.fingerprint and address in key.emails and address in info.emails


def _worker(url: str, me: int, n: int, pems: list[str], out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    s = open_keystore(url)
    lost = torn = seen = 0
    for i in range(n):
        mine, theirs = me * n + i, (1 - me) * n + i
        addr = f"w{mine}@d{mine}.com"
        harvest(s, _report(pems[mine], addr, msg=f"<{mine}>"))
        own = find_encryption_key(s, addr, NOW).chosen  # our own committed write is visible
        lost += own is None or own.fingerprint != parse_pem(pems[mine]).fingerprint
        other = find_encryption_key(s, f"w{theirs}@d{theirs}.com", NOW).chosen  # the other's: whole or absent
        if other is not None:
            seen += 1
            torn += not _whole(other, f"w{theirs}@d{theirs}.com")
    s.close()
    out.put((me, lost, torn, seen))


def test_two_processes_harvest_and_look_up_concurrently(store_url: str) -> None:
    open_keystore(store_url).close()
    n = 40
    pems = [make_cert((f"w{i}@d{i}.com",)) for i in range(2 * n)]
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(store_url, k, n, pems, q)) for k in range(2)]
    for p in procs:
        p.start()
    results = sorted(q.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert [r[1:3] for r in results] == [(0, 0), (0, 0)]  # nothing lost, nothing half-written
    s = open_keystore(store_url)
    keys = s.list_keys(kind="harvested")
    assert sorted(k.name for k in keys) == sorted(f"w{i}@d{i}.com" for i in range(2 * n))
    assert all(_whole(k, k.name) for k in keys)
    assert len([e for e in s.audit(1000) if e.action == "harvest"]) == 2 * n
    assert _sizes_agree(s)
    s.close()


def _forger(url: str, me: int, forged: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    s = open_keystore(url)
    actions = [harvest(s, _report(forged, msg=f"<evil{me}-{i}@x>", hours=5)).action for i in range(5)]
    s.close()
    out.put(actions)


def test_two_processes_receiving_a_forged_key_both_hold_it(store_url: str) -> None:
    s = open_keystore(store_url)
    genuine = make_cert(("alice@partner.com",), not_before=NOW - timedelta(days=60))
    assert harvest(s, _report(genuine)).action == "stored"
    forged = make_cert(("alice@partner.com",), not_before=NOW - timedelta(hours=1), other_key=True)
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_forger, args=(store_url, k, forged, q)) for k in range(2)]
    for p in procs:
        p.start()
    actions = [a for _ in procs for a in q.get(timeout=120)]
    for p in procs:
        p.join(120)
    assert actions == ["held"] * 10
    assert s.get("alice@partner.com", kind="harvested").pem.strip() == genuine.strip()
    assert len(s.pending()) == 10 and len([a for a in s.alerts() if a.kind == "key-change-held"]) == 10
    s.close()


def test_cli_add_show_export_import(store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pem = tmp_path / "a.pem"
    pem.write_text(make_cert(("a@example.com",)))
    assert main(["keys", "--store", store_url, "add", "alice", str(pem)]) == 0
    assert main(["keys", "--store", store_url, "--json", "search", "example.com"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("["):])[0]["name"] == "alice"
    assert main(["keys", "--store", store_url, "export", str(tmp_path / "k.txt")]) == 0
    assert main(["keys", "--store", store_url, "remove", "alice"]) == 0
    assert main(["keys", "--store", store_url, "import", str(tmp_path / "k.txt")]) == 0
    assert main(["keys", "--store", store_url, "show", "alice"]) == 0
    bad = tmp_path / "bad.txt"
    bad.write_text("garbage\n")
    capsys.readouterr()
    assert main(["keys", "--store", store_url, "import", str(bad)]) == 1
    assert "line 1" in capsys.readouterr().err
    assert main(["keys", "--store", store_url, "show", "nobody"]) == 1
