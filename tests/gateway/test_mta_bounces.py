"""Bounces never carry decrypted plaintext (issue 13 item 2): a message that arrived
encrypted and was decrypted by the gateway is returned as headers only, also when it bounces
after a restart (the fact is in the spool's envelope)."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

from runtime.pipeline.stages.smime_ops import protect
from tests.smime.pki import issue, key_pem

from .served import Served, Sink, send, wait_until

GATEWAY = """
workers = 1
queue_workers = 1
local_domains = ["example.org"]
[storage]
data_dir = "data"
[[listeners]]
port = {port}
[policies.default]
action = "ACCEPT"
smime_decrypt_verify = true
[certificates.org]
cert = "org.crt.pem"
key = "org.key.pem"
[delivery]
relay = "127.0.0.1:{sink}"
retry_schedule = [1]
max_queue_lifetime = 3600
"""

SECRET = "the launch code is 0000"


def test_a_decrypted_message_bounces_with_headers_only_after_a_restart(tmp_path: Path) -> None:
    org = issue("gateway.example.org", issue("example.org CA", ca=True), key_usage=None,
                emails=["bob@example.org", "example.org"])
    (tmp_path / "org.crt.pem").write_bytes(org.pem)
    (tmp_path / "org.key.pem").write_bytes(key_pem(org.key))
    plain = (f"From: <a@example.com>\r\nTo: <bob@example.org>\r\nSubject: quarterly\r\n"
             f"\r\n{SECRET}\r\n").encode()
    sealed = protect(plain, mode="encrypt", recipients=[org.cert])
    assert SECRET.encode() not in sealed

    answer = ["451 4.2.0 mailbox busy"]
    attempts: list[str] = []

    def reply(rcpt: str) -> str:
        if rcpt != "bob@example.org":
            return "250 2.1.5 OK"
        attempts.append(rcpt)
        return answer[0]

    with Sink(reply) as sink:
        gw = Served(tmp_path, GATEWAY, sink)
        with gw:
            assert send(gw.port, "a@example.com", ["bob@example.org"], sealed)[-1][:3] == "250"
            wait_until("a first delivery attempt", lambda: attempts)
        # Stopped with the decrypted message in the deferred queue, which says so.
        deferred = list((tmp_path / "data" / "spool" / "deferred").iterdir())
        assert deferred, "the message should wait in the deferred queue"
        header = json.loads(deferred[0].read_bytes().split(b"\n", 2)[1])
        assert header["headers_only_dsn"] is True
        answer[0] = "550 5.1.1 no such user"
        with gw:  # the same gateway, restarted
            [dsn] = wait_until("the DSN", lambda: sink.to("a@example.com"))
    assert SECRET.encode() not in dsn.data
    parsed = email.message_from_bytes(dsn.data, policy=email.policy.default)
    returned = list(parsed.iter_parts())[-1]
    assert returned.get_content_type() == "text/rfc822-headers"
    assert "Subject: quarterly" in returned.get_content()
