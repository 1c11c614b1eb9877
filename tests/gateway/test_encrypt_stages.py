"""encrypt / encrypt-deferred in the stages and the queue, in process: the order of S/MIME and
envelope encryption, rule 1 at delivery through a transport without TLS, splinter copies, and
the envelope fields that carry rule 1 across the spool."""

from __future__ import annotations

from pathlib import Path

from runtime.config.config import load_config
from runtime.mta.spool import Envelope, Spool
from runtime.mta.supervisor import make_runner
from runtime.mta.transport import MemoryTransport
from runtime.pipeline.stages import build_stages
from smime import compose
from smime.trust import TrustStore
from tests.smime.pki import issue

from .e2e_support import key_pem
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
[certificates.org]
cert = "org.crt.pem"
key = "org.key.pem"
[profiles.sign]
mode = "sign"
signing_certificate = "org"
[profiles.enc-split]
mode = "encrypt"
missing_key_action = "split"
[encryption_profiles.P]
sending_profile = "enc-split"
[delivery]
relay = "127.0.0.1:2526"
"""
MSG = (b"From: <a@example.com>\r\nTo: <b@example.org>\r\nSubject: quarterly\r\n"
       b"Message-ID: <m@x>\r\n\r\nsecret body\r\n")


PARTNER = issue("b@example.org", emails=["b@example.org"], key_usage=None)


def _run(tmp_path: Path, actions: str, rcpts: tuple[str, ...]) -> MemoryTransport:
    org = issue("gw.example.com", emails=["example.com"], key_usage=None)
    (tmp_path / "org.crt.pem").write_bytes(org.pem)
    (tmp_path / "org.key.pem").write_bytes(key_pem(org.key))
    (tmp_path / "gateway.toml").write_text(CONFIG)
    (tmp_path / "m.filter").write_text(f"f: if true {{ {actions} }}\n")
    config = load_config(tmp_path / "gateway.toml")
    stages = build_stages(config)
    stages["smime_outbound"].ctx.store.add_public("b", PARTNER.pem.decode("ascii"))  # type: ignore[attr-defined]
    t = MemoryTransport()
    r = make_runner(config, Spool(tmp_path / "spool"), transport=t, stages=stages)
    r.spool.store(Envelope("a@example.com", rcpts, peer="127.0.0.1", policy="users"), MSG)
    run_queue(r)
    return t


def _sent(t: MemoryTransport) -> dict[str, bytes]:
    return {rcpt: data for _, _, rcpts, data in t.sent for rcpt in rcpts}


def test_smime_first_then_envelope_encryption(tmp_path: Path) -> None:
    """Reference 7.10: both deferred operations apply, S/MIME first."""
    t = _run(tmp_path, "encrypt-deferred('P'); smime-gateway-deferred('sign');", ("b@example.org",))
    data = _sent(t)["b@example.org"]
    assert compose.is_smime(data) == (False, True)  # the outside: encrypted
    assert b"secret body" not in data
    opened = compose.unwrap(data, keys=[(PARTNER.key, PARTNER.cert)], trust=TrustStore())
    assert [layer.kind for layer in opened.layers] == ["encrypted", "signed"]


def test_rule_1_without_tls_encrypts_at_delivery_and_splits(tmp_path: Path) -> None:
    """A transport without TLS (here the in-memory one) never meets rule 1's policy: the
    queue encrypts for the keyed recipient and, missing_key_action = "split", sends the other
    its copy in clear."""
    t = _run(tmp_path, "encrypt('P', 'Sealed', 1);", ("b@example.org", "n@example.org"))
    sent = _sent(t)
    assert compose.is_smime(sent["b@example.org"]) == (False, True)
    assert b"Subject: Sealed\r\n" in sent["b@example.org"]
    assert b"secret body" in sent["n@example.org"] and b"Subject: quarterly" in sent["n@example.org"]


def test_rule_0_encrypts_in_the_pipeline(tmp_path: Path) -> None:
    t = _run(tmp_path, "encrypt-deferred('P');", ("b@example.org",))
    data = _sent(t)["b@example.org"]
    assert compose.is_smime(data) == (False, True)
    assert b"Subject: quarterly\r\n" in data  # the default subject: $Subject


def test_rule_1_survives_the_spool() -> None:
    env = Envelope("a@x", ("b@y",), encrypt_unless_tls="P", encrypt_subject="Sealed")
    assert Envelope.from_json(env.to_json()) == env
    old = {k: v for k, v in env.to_json().items()
           if k not in ("encrypt_unless_tls", "encrypt_subject")}
    assert Envelope.from_json(old).encrypt_unless_tls == ""  # a file written before them
