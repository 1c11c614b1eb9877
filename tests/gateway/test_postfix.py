"""Beside Postfix: Postfix hands mail to the gateway as an after-queue content filter, the
gateway re-injects into Postfix's second smtpd, and Postfix delivers to the sink.

    swaks → Postfix :P → content_filter smtp:[127.0.0.1]:GW → gateway → reinject :R → sink

The gateway runs its real pipeline: a message filter asks for the `sign` sending profile on
delivery, so what reaches the sink is signed with the organisation's certificate.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from runtime.pipeline.stages.smime_ops import is_smime
from tests.smime.pki import issue, key_pem

from .test_noloss import free_port, wait_port

FILTERLANG = Path(sys.executable).parent / "filterlang"


class Sink:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.messages.append(envelope.original_content)
        return "250 2.0.0 sunk"


def postfix_dir(root: Path, port: int, reinject: int, gw: int, sink: int) -> Path:
    conf = root / "conf"
    for sub in ("conf", "q", "data"):
        (root / sub).mkdir(parents=True)
    shutil.chown(root / "data", "postfix")
    master = Path("/etc/postfix/master.cf").read_text().splitlines()
    out = []
    for line in master:
        fields = line.split()
        if line and not line[0].isspace() and not line.startswith("#") and len(fields) >= 8:
            fields[4] = "n"  # no chroot: the private queue folder has no /etc copies
            if fields[0] == "smtp" and fields[1] == "inet":
                fields[0] = str(port)
            line = "  ".join(fields)
        out.append(line)
    out += [
        f"127.0.0.1:{reinject} inet n - n - 10 smtpd",
        "  -o content_filter=",
        "  -o receive_override_options=no_address_mappings",
        "  -o smtpd_relay_restrictions=permit_mynetworks,reject",
    ]
    (conf / "master.cf").write_text("\n".join(out) + "\n")
    (conf / "main.cf").write_text(f"""
queue_directory = {root / 'q'}
data_directory = {root / 'data'}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = postfix.test
mydestination =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
compatibility_level = 3.6
maillog_file = /dev/stdout
content_filter = smtp:[127.0.0.1]:{gw}
relayhost = [127.0.0.1]:{sink}
""")
    return conf


@pytest.mark.interop
@pytest.mark.timeout(120)
def test_postfix_after_queue_content_filter(tmp_path: Path) -> None:
    for tool in ("postfix", "swaks"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.skip(f"{tool} is not installed")
    if os.geteuid() != 0:
        pytest.skip("a throwaway Postfix needs root to start")
    port, reinject, gw_port, sink_port = (free_port() for _ in range(4))
    # pytest's tmp folders are 0700 root: the postfix user could not reach its lock file.
    pf_root = Path(tempfile.mkdtemp(prefix="fl-postfix-"))
    pf_root.chmod(0o755)
    conf = postfix_dir(pf_root, port, reinject, gw_port, sink_port)
    org = issue("gateway.example.org", emails=["example.org"], key_usage=None)
    (tmp_path / "org.crt.pem").write_bytes(org.pem)
    (tmp_path / "org.key.pem").write_bytes(key_pem(org.key))
    (tmp_path / "sign.filter").write_text("sign_all:\n  if true {\n    smime-gateway-deferred('sign');\n  }\n")
    (tmp_path / "gateway.toml").write_text(f"""
workers = 1
message_filters = ["sign.filter"]
[certificates.org]
cert = "org.crt.pem"
key = "org.key.pem"
[profiles.sign]
mode = "sign"
signing_certificate = "org"
[storage]
data_dir = "data"
[[listeners]]
port = {gw_port}
[sender_groups.local]
ips = ["127.0.0.0/8"]
policy = "relay"
[policies.relay]
action = "RELAY"
[delivery]
reinject = "127.0.0.1:{reinject}"
""")
    sink = Sink()
    ctl = Controller(sink, hostname="127.0.0.1", port=sink_port)
    ctl.start()
    log = (tmp_path / "postfix.log").open("wb")
    pf = subprocess.Popen(["postfix", "-c", str(conf), "start-fg"], stdout=log, stderr=log)
    gw = subprocess.Popen([str(FILTERLANG), "serve", "-c", str(tmp_path / "gateway.toml")],
                          stdout=log, stderr=log, start_new_session=True)
    try:
        wait_port(gw_port)
        wait_port(port)
        out = subprocess.run(
            ["swaks", "--server", "127.0.0.1", "--port", str(port), "--from", "alice@example.com",
             "--to", "bob@example.org", "--header", "Subject: through postfix",
             "--body", "hello via the gateway"],
            capture_output=True, text=True, timeout=60,
        )
        assert "<-  250" in out.stdout.split("DATA")[-1], out.stdout
        end = time.monotonic() + 60
        while not sink.messages and time.monotonic() < end:
            time.sleep(0.2)
        assert sink.messages, (tmp_path / "postfix.log").read_text()[-3000:]
        assert b"hello via the gateway" in sink.messages[0]
        assert is_smime(sink.messages[0]) == (True, False)  # it comes out signed
        assert b"application/pkcs7-signature" in sink.messages[0]
        track = (tmp_path / "data" / "tracking.jsonl").read_text()
        assert re.search(rf'"dest":"127.0.0.1:{reinject}"', track)  # it went through the gateway
    finally:
        subprocess.run(["postfix", "-c", str(conf), "stop"], capture_output=True, check=False)
        try:
            pf.wait(20)
        except subprocess.TimeoutExpired:
            pf.kill()
        gw.send_signal(signal.SIGTERM)
        try:
            gw.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(gw.pid, signal.SIGKILL)
        ctl.stop()
        log.close()
        shutil.rmtree(pf_root, ignore_errors=True)
