"""The filter stages on live messages: message-filter actions, mail-policy splinters with their
content filters, and the config / start-up checks of what the stages load."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.config.config import ConfigError, load_config
from runtime.mta.queue import QueueRunner
from runtime.mta.spool import Envelope, Spool
from runtime.mta.supervisor import CertificateProblem, check_stages, make_runner
from runtime.mta.transport import MemoryTransport
from runtime.pipeline.stages import build_stages

from .queue_support import run_queue

CONFIG = """
message_filters = ["m.filter"]
[storage]
data_dir = "data"
[[listeners]]
port = 2525
[sender_groups.users]
ips = ["127.0.0.0/8"]
policy = "users"
[policies.users]
action = "RELAY"
[quarantines.Policy]
[outgoing_policies.sales]
recipients = ["@sales.example"]
content_filters = ["c.filter"]
[outgoing_policies.default]
content_filters = []
[delivery]
relay = "127.0.0.1:2526"
"""
CONTENT = """
content-filter cf_sales:
    direction outgoing
    if true {
        insert-header('X-Sales', 'yes');
    }
"""
MSG = b"From: <a@example.com>\r\nTo: <x@example.org>\r\nSubject: quarterly\r\nMessage-ID: <m@x>\r\n\r\nbody\r\n"
RCPTS = ("b@example.org", "c@sales.example")


def runner(tmp_path: Path, message_filter: str) -> tuple[MemoryTransport, QueueRunner]:
    (tmp_path / "gateway.toml").write_text(CONFIG)
    (tmp_path / "m.filter").write_text(message_filter)
    (tmp_path / "c.filter").write_text(CONTENT)
    config = load_config(tmp_path / "gateway.toml")
    t = MemoryTransport()
    r = make_runner(config, Spool(tmp_path / "spool"), transport=t, stages=build_stages(config))
    r.spool.store(Envelope("a@example.com", RCPTS, peer="127.0.0.1", policy="users"), MSG)
    run_queue(r)
    return t, r


def f(body: str) -> str:
    return f"f1:\n  if subject == 'quarterly' {{\n    {body}\n  }}\n"


def test_splinters_get_their_own_content_filters(tmp_path: Path) -> None:
    t, _ = runner(tmp_path, f("insert-header('X-Seen', 'message filter');"))
    by_rcpt = {s[2]: s[3] for s in t.sent}
    assert set(by_rcpt) == {("b@example.org",), ("c@sales.example",)}
    assert b"X-Seen: message filter" in by_rcpt[("b@example.org",)]
    assert b"X-Sales: yes" in by_rcpt[("c@sales.example",)]
    assert b"X-Sales" not in by_rcpt[("b@example.org",)]


@pytest.mark.parametrize(("action", "check"), [
    ("drop();", lambda t, r: t.sent == [] and r.spool.list("incoming") == []),
    ("bounce();", lambda t, r: [s[2] for s in t.sent] == [("a@example.com",)]
     and b"multipart/report" in t.sent[0][3]),
    ("alt-rcpt-to('review@example.net');", lambda t, r: [s[2] for s in t.sent] == [("review@example.net",)]),
    ("alt-mailhost('127.0.0.9:2600');", lambda t, r: {str(s[0]) for s in t.sent} == {"127.0.0.9:2600"}),
    ("bcc('audit@example.net');", lambda t, r: sorted(s[2] for s in t.sent)[0] == ("audit@example.net",)),
    ("quarantine('Policy');", lambda t, r: t.sent == []
     and len(list((r.spool.root.parent / "data" / "quarantine" / "Policy").iterdir())) >= 1),
])
def test_message_filter_actions_reach_the_queue(tmp_path: Path, action: str, check: object) -> None:
    t, r = runner(tmp_path, f(action))
    assert check(t, r), t.sent  # type: ignore[operator]
    assert r.spool.list("hold") == []


def test_filter_that_does_not_compile_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_text(CONFIG)
    (tmp_path / "m.filter").write_text("broken:\n  if subject == {\n")
    (tmp_path / "c.filter").write_text(CONTENT)
    with pytest.raises(CertificateProblem, match=r"message_filters: a filter file does not compile"):
        check_stages(load_config(tmp_path / "gateway.toml"))


def test_missing_certificate_gives_the_command_to_create_it(tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_text(CONFIG + '[certificates.org]\ncert = "org.crt.pem"\nkey = "org.key.pem"\n')
    (tmp_path / "m.filter").write_text(f("drop();"))
    (tmp_path / "c.filter").write_text(CONTENT)
    with pytest.raises(CertificateProblem, match=r"certificates.org: cannot read .*filterlang cert create"):
        check_stages(load_config(tmp_path / "gateway.toml"))


@pytest.mark.parametrize(("smime", "expected"), [
    ('decryption_certificates = ["nope"]', "smime.decryption_certificates[0]: no certificate 'nope'"),
    ('on_decrypt_failure = "quarantine"', "smime.decrypt_failure_quarantine: on_decrypt_failure"),
    ('on_decrypt_failure = "quarantine"\ndecrypt_failure_quarantine = "Nope"',
     "smime.decrypt_failure_quarantine: no quarantine 'Nope'"),
    ('trust_anchors = ["missing.pem"]', "smime.trust_anchors[0]:"),
    ('on_decrypt_failure = "bounce"', "smime.on_decrypt_failure: must be one of deliver, quarantine"),
])
def test_smime_config_mistakes_name_the_key(tmp_path: Path, smime: str, expected: str) -> None:
    (tmp_path / "gateway.toml").write_text(CONFIG + f"[smime]\n{smime}\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "gateway.toml")
    assert expected in str(err.value)


def test_quarantined_message_is_protected_before_it_waits(tmp_path: Path) -> None:
    """A message quarantined with a deferred encrypting profile waits already encrypted (and
    split copies wait in the same quarantine), so a release can never send it in clear."""
    from tests.smime.pki import issue, key_pem

    org = issue("gw.example.com", emails=["example.com"], key_usage=None)
    partner = issue("b@example.org", emails=["b@example.org"], key_usage=None)
    (tmp_path / "org.crt.pem").write_bytes(org.pem)
    (tmp_path / "org.key.pem").write_bytes(key_pem(org.key))
    extra = ('[certificates.org]\ncert = "org.crt.pem"\nkey = "org.key.pem"\n'
             '[profiles.enc]\nmode = "sign-encrypt"\nsigning_certificate = "org"\nmissing_key_action = "split"\n')
    (tmp_path / "gateway.toml").write_text(CONFIG.replace("[delivery]", extra + "[delivery]"))
    (tmp_path / "m.filter").write_text(f("smime-gateway-deferred('enc'); quarantine('Policy');"))
    (tmp_path / "c.filter").write_text(CONTENT.replace("if true", "if not true"))
    config = load_config(tmp_path / "gateway.toml")
    stages = build_stages(config)
    stages["smime_outbound"].ctx.store.add_public("b", partner.pem.decode("ascii"))  # type: ignore[attr-defined]
    t = MemoryTransport()
    r = make_runner(config, Spool(tmp_path / "spool"), transport=t, stages=stages)
    r.spool.store(Envelope("a@example.com", ("b@example.org", "n@example.org"), peer="127.0.0.1",
                           policy="users"), MSG)
    run_queue(r)
    assert t.sent == []
    waiting = sorted((tmp_path / "data" / "quarantine" / "Policy").iterdir())
    assert len(waiting) == 2
    blobs = [p.read_bytes() for p in waiting]
    assert sum(b"application/pkcs7-mime" in b for b in blobs) == 1  # b's copy: encrypted
    assert sum(b"multipart/signed" in b for b in blobs) == 1  # n has no key: signed only (split)


@pytest.mark.parametrize("name", [b"X-Filterlang-SMIME", b"X-Filterlang-SMIME-Status"])
def test_gateway_status_header_from_outside_is_removed(tmp_path: Path, name: bytes) -> None:
    # The gateway's own header and the verifier's status-header family (smime.mime).
    forged = name + b": decrypted; verified;\r\n signers=ceo@example.com\r\n" + MSG
    (tmp_path / "gateway.toml").write_text(CONFIG)
    (tmp_path / "m.filter").write_text(f("insert-header('X-Seen', 'yes');"))
    (tmp_path / "c.filter").write_text(CONTENT)
    config = load_config(tmp_path / "gateway.toml")
    t = MemoryTransport()
    r = make_runner(config, Spool(tmp_path / "spool"), transport=t, stages=build_stages(config))
    r.spool.store(Envelope("a@example.com", ("b@example.org",), peer="127.0.0.1", policy="users"), forged)
    run_queue(r)
    [sent] = t.sent
    assert b"X-Filterlang-SMIME" not in sent[3] and b"ceo@example.com" not in sent[3]
    assert b"X-Seen: yes" in sent[3]


def test_key_store_serves_the_queue_loop_and_its_threads(tmp_path: Path) -> None:
    """Small messages run the pipeline in the queue's event loop, large ones (over
    INLINE_LIMIT) in threads beside it: the key store serves both, side by side."""
    from runtime.mta.queue import INLINE_LIMIT
    from smime.keystore import open_keystore
    from tests.smime.pki import issue, key_pem

    org = issue("gw.example.com", emails=["example.com"], key_usage=None)
    partner = issue("b@example.org", emails=["b@example.org"], key_usage=None)
    (tmp_path / "org.crt.pem").write_bytes(org.pem)
    (tmp_path / "org.key.pem").write_bytes(key_pem(org.key))
    extra = ('[certificates.org]\ncert = "org.crt.pem"\nkey = "org.key.pem"\n'
             '[profiles.enc]\nmode = "sign-encrypt"\nsigning_certificate = "org"\n')
    (tmp_path / "gateway.toml").write_text(CONFIG.replace("[delivery]", extra + "[delivery]"))
    (tmp_path / "m.filter").write_text(f("smime-gateway-deferred('enc');"))
    (tmp_path / "c.filter").write_text(CONTENT)
    config = load_config(tmp_path / "gateway.toml")
    admin = open_keystore(config.storage.keystore_url)
    admin.add_public("b", partner.pem.decode("ascii"))
    admin.close()
    t = MemoryTransport()
    r = make_runner(config, Spool(tmp_path / "spool"), transport=t, stages=build_stages(config))
    large = MSG + (b"x" * 76 + b"\r\n") * (INLINE_LIMIT // 78 + 1)
    for n in range(8):
        r.spool.store(Envelope("a@example.com", ("b@example.org",), peer="127.0.0.1",
                               policy="users"), large if n % 2 else MSG)
    assert run_queue(r) == 8
    assert len(t.sent) == 8 and r.spool.list("hold") == []
    assert all(b"application/pkcs7-mime" in s[3] for s in t.sent)


# A rule that cannot read its fact fails at run time (reference 4.7): remote-ip of a peer that
# is no address.
FAILING = "f1:\n  if remote-ip == '10.0.0.0/8' {\n    drop();\n  }\n"


@pytest.mark.parametrize("mode", ["bypass", "tempfail"])
def test_on_filter_error(tmp_path: Path, mode: str) -> None:
    """bypass: the message goes on without that stage's actions; tempfail: it waits in the
    queue (deferred, unprocessed), every recipient is told so in the tracking log, and its
    filters run again at the next attempt."""
    (tmp_path / "gateway.toml").write_text(f'on_filter_error = "{mode}"\n' + CONFIG)
    (tmp_path / "m.filter").write_text(FAILING)
    (tmp_path / "c.filter").write_text(CONTENT)
    config = load_config(tmp_path / "gateway.toml")
    assert config.on_filter_error == mode
    t = MemoryTransport()
    r = make_runner(config, Spool(tmp_path / "spool"), transport=t, stages=build_stages(config))
    r.spool.store(Envelope("a@example.com", RCPTS, peer="not-an-address", policy="users"), MSG)
    run_queue(r)
    if mode == "bypass":
        assert sorted(s[2] for s in t.sent) == [("b@example.org",), ("c@sales.example",)]
        assert r.spool.list("deferred") == []
        return
    assert t.sent == []
    (qid,) = r.spool.list("deferred")
    env, data = r.spool.read("deferred", qid)
    assert env.rcpt_tos == RCPTS and not env.processed and data == MSG
    assert env.attempts == 1 and env.last_error.startswith("451 4.3.0 message filter error")


def test_on_filter_error_must_be_bypass_or_tempfail(tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_text('on_filter_error = "ignore"\n' + CONFIG)
    with pytest.raises(ConfigError, match="on_filter_error"):
        load_config(tmp_path / "gateway.toml")
