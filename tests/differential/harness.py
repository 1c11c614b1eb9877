"""One generated gateway: its files, `filterlang test -c`'s prediction of every case, and what
`filterlang serve` (a real subprocess) then delivers to a real sink on loopback.

Predictions use the code `filterlang test -c` runs (`runtime.commands._gateway_trace`), before
the gateway starts, against the same key store file. Delivered messages are compared after
what must differ is taken out: Received lines (queue id, time), MIME boundaries, signature
bytes and encryption (each side is unwrapped with the test's keys, and the layers, the
verification result and the content are compared).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from attrs import define, field

from runtime.commands._gateway_trace import Gateway, Session, trace_message
from runtime.config.config import load_config
from runtime.engine.providers.scanners import SpamVerdict
from runtime.engine.services import Services
from runtime.pipeline.trace import MessageTrace, to_text
from smime import compose
from smime.keystore import open_keystore
from smime.trust import TrustStore
from tests.differential.corpus import KEYED, Case, GatewaySpec
from tests.gateway.test_noloss import free_port
from tests.smime.pki import Issued, issue, key_pem

FILTERLANG = Path(sys.executable).parent / "filterlang"

TOML = """
workers = 1
queue_workers = 1
local_domains = ["example.org"]
message_filters = ["message.filter"]

[storage]
data_dir = "data"
keystore_url = "sqlite:///{root}/data/keys.sqlite3"

[[listeners]]
name = "main"
address = "127.0.0.1"
port = {port}
hostname = "gw.diff.example"

[sender_groups.local]
ips = ["127.0.0.1/32"]
policy = "{policy}"

[policies.relay]
action = "RELAY"

[policies.inbound]
action = "ACCEPT"
smime_decrypt_verify = true
smime_signature = "{signature}"

[smime]
trust_anchors = ["ca.pem"]

[policies.default]
action = "ACCEPT"

[certificates.org]
cert = "org.crt.pem"
key = "org.key.pem"

[profiles.sign]
mode = "sign"
signing_certificate = "org"
sign_mode = "{sign_mode}"

[profiles.enc]
mode = "{enc_mode}"
signing_certificate = "org"
sign_mode = "{sign_mode}"
missing_key_action = "{missing}"
cipher = "{cipher}"

[quarantines.Q]

[delivery]
relay = "127.0.0.1:{sink}"
retry_schedule = [1]
max_queue_lifetime = 600
connect_timeout = 5
"""


# What the stand-in Rspamd answers for each verdict: (its action, its score).
RSPAMD_ANSWERS = {"ham": ("no action", 0.0), "suspect": ("add header", 6.0),
                  "spam": ("reject", 15.0)}


class FakeRspamd:
    """A stand-in for Rspamd's HTTP interface (POST /checkv2): it answers each message by its
    envelope sender (the From request header the gateway sends), from the corpus's verdicts,
    so the answer does not depend on what the filters or S/MIME did to the message."""

    def __init__(self, verdicts: dict[str, str]) -> None:
        answers = {sender: RSPAMD_ANSWERS[v] for sender, v in verdicts.items()}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                action, score = answers.get(self.headers.get("From", ""), ("no action", 0.0))
                body = json.dumps({"action": action, "score": score, "symbols": {}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Sink:
    """The next hop: an aiosmtpd server that keeps every transaction."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, tuple[str, ...], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        sender = "" if envelope.mail_from in ("<>", None) else envelope.mail_from  # the null sender
        self.messages.append((sender, tuple(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 stored"


@define
class Pki:
    """The organisation's CA and gateway certificate, and the partners' keys."""

    ca: Issued
    org: Issued
    partners: dict[str, Issued]

    @classmethod
    def make(cls) -> Pki:
        ca = issue("diff CA", ca=True)
        org = issue("gw.example.org", ca, key_usage=None, emails=["example.org"])
        partners = {a: issue(a, ca, key_usage=None, emails=[a]) for a in KEYED}
        return cls(ca, org, partners)

    def keys(self) -> list[tuple[Any, Any]]:
        return [(i.key, i.cert) for i in (self.org, *self.partners.values())]


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "filters"
EXAMPLE_MESSAGE_FILTERS = ("header-stamping.filter", "attachments-and-size.filter", "gateway-sign.filter",
                           "smime-rules.filter", "smime-delivery.filter", "worked-examples.filter")
EXAMPLE_TOML = """
[text_resources]
legal_disclaimer = "disclaimer.txt"

[quarantines.Policy]
[quarantines.DLP]
[quarantines.SMIME_Failed]
[quarantines.SPF_Fail]

[profiles.partner_sign_encrypt]
mode = "sign-encrypt"
signing_certificate = "org"
missing_key_action = "split"

[profiles.finance_sign_encrypt]
mode = "sign-encrypt"
signing_certificate = "org"
missing_key_action = "bounce"

[profiles.encrypt_only]
mode = "encrypt"
missing_key_action = "drop"

[outgoing_policies.Default]
content_filters = ["{examples}/outgoing-policy.filter"]
"""

_GMT = re.compile(rb"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT")
_RECEIVED = re.compile(rb"(?im)^Received:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*\r\n")
_BOUNDARY = re.compile(rb'(?i)boundary="?([^";\r\n]+)"?')
_CASE = re.compile(rb"X-Case-Id: (\d+)")
_DSN_FIELDS = re.compile(rb"(?im)^(?:Final-Recipient|Action|Status):[^\r\n]*")


def _without_boundaries(data: bytes) -> bytes:
    for b in set(_BOUNDARY.findall(data)):
        data = data.replace(b, b"BOUNDARY")
    return data


def canonical(data: bytes, mail_from: str, trust: TrustStore, keys: list[tuple[Any, Any]]) -> str:
    """What must be equal between the prediction and the delivery, as text."""
    if mail_from == "":  # a DSN: whom it reports on and how, not its dates and ids
        fields = sorted(x.decode() for x in _DSN_FIELDS.findall(data))
        return "DSN " + " | ".join(fields)
    layers = ""
    signed, encrypted = compose.is_smime(data)
    if signed or encrypted:
        res = compose.unwrap(data, keys=keys, trust=trust)
        layers = (f"[{'/'.join(x.kind for x in res.layers)} verified={res.verified} "
                  f"errors={[c for c, _ in res.errors]}] ")
        data = res.content
    data = _GMT.sub(b"<time>", _RECEIVED.sub(b"", data))  # $GMTimeStamp: the second it ran
    return layers + _without_boundaries(data).decode("utf-8", "replace")


def case_of(data: bytes, trust: TrustStore, keys: list[tuple[Any, Any]]) -> int | None:
    found = _CASE.search(data)
    if found is None and any(compose.is_smime(data)):
        found = _CASE.search(compose.unwrap(data, keys=keys, trust=trust).content)
    return int(found.group(1)) if found else None


@define
class Outcome:
    """What a case got from serve: refusals at SMTP, and what arrived at the sink."""

    refused: dict[str, str] = field(factory=dict)
    error: str = ""
    arrived: list[tuple[str, tuple[str, ...], bytes]] = field(factory=list)


@define
class Run:
    spec: GatewaySpec
    root: Path
    pki: Pki
    sink_port: int = 0
    port: int = 0
    predictions: dict[int, MessageTrace] = field(factory=dict)
    sent: dict[int, bytes] = field(factory=dict)  # each case's message as sent
    outcomes: dict[int, Outcome] = field(factory=dict)
    quarantined: Counter[str] = field(factory=Counter)
    unmatched: list[tuple[str, tuple[str, ...], bytes]] = field(factory=list)  # no X-Case-Id
    rspamd: FakeRspamd | None = None  # where the gateway scans for spam

    def write(self) -> None:
        spec, root = self.spec, self.root
        root.mkdir(parents=True)
        (root / "data").mkdir()
        self.port, self.sink_port = free_port(), free_port()
        (root / "org.crt.pem").write_bytes(self.pki.org.pem)
        (root / "ca.pem").write_bytes(self.pki.ca.pem)
        (root / "org.key.pem").write_bytes(key_pem(self.pki.org.key))
        (root / "message.filter").write_text(spec.message_filters.replace("{sink}", str(self.sink_port)))
        text = TOML.format(root=root, port=self.port, sink=self.sink_port,
                           policy="relay" if spec.direction == "outgoing" else "inbound",
                           sign_mode=spec.sign_mode, enc_mode=spec.enc_mode, missing=spec.missing,
                           cipher=spec.cipher, signature="remove" if spec.sign_mode == "opaque" else "retain")
        if spec.examples:
            files = ", ".join(f'"{EXAMPLES / f}"' for f in EXAMPLE_MESSAGE_FILTERS)
            # The example filters test SPF and reputation, which this gateway does not run
            # (as examples/gateway.toml says): those rules are false on both sides.
            text = text.replace('message_filters = ["message.filter"]',
                                f"message_filters = [{files}]\n"
                                'allow_unavailable = ["spf", "dmarc", "reputation"]')
            text = text.replace('name = "main"', 'name = "Outbound"')
            text += EXAMPLE_TOML.replace("{examples}", str(EXAMPLES))
            (root / "disclaimer.txt").write_text("This message was checked by $Hostname.")
        table = "outgoing_policies" if spec.direction == "outgoing" else "incoming_policies"
        spam = {name: (action, tag) for name, action, tag in spec.spam_policies}
        policies = () if spec.examples else spec.policies
        if spam and not policies:
            policies = (("Default", (), ""),)
        for name, members, filters in policies:
            files = []
            if filters:
                (root / f"cf_{name}.filter").write_text(filters)
                files.append(f"cf_{name}.filter")
            text += (f"\n[{table}.{name}]\nrecipients = {list(members)!r}\n"
                     f"content_filters = {files!r}\n").replace("'", '"')
            if name in spam:
                action, tag = spam[name]
                text += f'antispam = true\nspam_action = "{action}"\n'
                text += 'spam_quarantine = "Q"\n' if action == "quarantine" else ""
                text += f'spam_subject_tag = "{tag}"\n' if tag else ""
        if spam:
            self.rspamd = FakeRspamd({c.mail_from: c.spam for c in spec.cases})
            text += f'\n[antispam]\nrspamd = "http://127.0.0.1:{self.rspamd.port}"\ntimeout = 10\n'
        (root / "gateway.toml").write_text(text)
        store = open_keystore(f"sqlite:///{root}/data/keys.sqlite3")
        try:
            for address, issued in self.pki.partners.items():
                store.add_public(address, issued.pem.decode("ascii"))
        finally:
            store.close()

    def message(self, case: Case) -> bytes:
        """The case's message as the partner sends it (encrypted to us, or signed)."""
        if case.smime == "encrypt":
            return compose.protect(case.data, mode="encrypt", recipients=[self.pki.org.cert])
        if case.smime == "sign":
            signer = self.pki.partners[KEYED[0]]
            return compose.protect(case.data, mode="sign", signer=compose.Signer(signer.key, signer.cert, ()))
        return case.data

    def predict(self) -> None:
        gw = Gateway.load(load_config(self.root / "gateway.toml"))
        for case in self.spec.cases:
            session = Session("127.0.0.1", "client.diff.example", "", case.mail_from, list(case.rcpts))
            self.sent[case.n] = self.message(case)
            # Where the gateway scans, the stand-in Rspamd's answer for this case, recorded
            # (--services): the prediction asks no scanner.
            services = None
            if self.rspamd is not None:
                action, score = RSPAMD_ANSWERS[case.spam]
                services = Services(spam=SpamVerdict(case.spam, score, action, ()))
            self.predictions[case.n] = trace_message(gw, session, self.sent[case.n],
                                                     f"case {case.n}", case.n, services)
        gw.ctx.store.close()

    def new_ports(self) -> None:
        """Another process took a port between free_port() and the bind (eight test suites
        share this machine): move the gateway and the sink to fresh ones. The predictions
        stay valid: ports only decide where mail goes, never what it is."""
        old_port, old_sink = self.port, self.sink_port
        self.port, self.sink_port = free_port(), free_port()
        for name in ("gateway.toml", "message.filter"):
            path = self.root / name
            text = path.read_text().replace(f"port = {old_port}\n", f"port = {self.port}\n")
            path.write_text(text.replace(f"127.0.0.1:{old_sink}", f"127.0.0.1:{self.sink_port}"))

    @contextlib.contextmanager
    def serving(self) -> Iterator[Sink]:
        for _ in range(5):
            started = self._start()
            if started is not None:
                break
            self.new_ports()
        else:
            raise AssertionError(f"filterlang serve did not start:\n{self.log_tail()}")
        sink, ctl, proc, log = started
        try:
            yield sink
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            log.close()
            ctl.stop()
            if self.rspamd is not None:
                self.rspamd.stop()

    def _start(self) -> tuple[Sink, Controller, subprocess.Popen[bytes], Any] | None:
        """The sink and our gateway, or None when a port was taken meanwhile."""
        sink = Sink()
        ctl = Controller(sink, hostname="127.0.0.1", port=self.sink_port)
        try:
            ctl.start()
        except (OSError, RuntimeError):
            return None
        log = (self.root / "serve.log").open("wb")
        proc = subprocess.Popen([str(FILTERLANG), "serve", "-c", str(self.root / "gateway.toml")],
                                stdout=log, stderr=log, start_new_session=True)
        end = time.monotonic() + 90.0
        while time.monotonic() < end and proc.poll() is None:
            # Our gateway's greeting names its hostname: a 220 from anyone else is not ours.
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=5) as conn:
                if b"gw.diff.example" in conn.recv(200):
                    return sink, ctl, proc, log
            time.sleep(0.1)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
        ctl.stop()
        return None

    def send(self, client: smtplib.SMTP, case: Case) -> Outcome:
        """One transaction on the open connection (sessions are cheap to keep: one per run)."""
        out = Outcome()
        try:
            refused = client.sendmail(case.mail_from, list(case.rcpts), self.sent[case.n])
            out.refused = {r: f"{code} {text.decode()}" for r, (code, text) in refused.items()}
        except smtplib.SMTPRecipientsRefused as exc:
            out.refused = {r: f"{code} {text.decode()}" for r, (code, text) in exc.recipients.items()}
        except smtplib.SMTPResponseException as exc:
            out.error = f"{exc.smtp_code} {exc.smtp_error.decode()}"
        return out

    def expected_deliveries(self) -> int:
        return sum(1 for t in self.predictions.values() for m in t.leaving if not m.quarantine)

    def settled(self) -> bool:
        spool = self.root / "data" / "spool"
        busy = [p for state in ("incoming", "active", "deferred") for p in (spool / state).rglob("*")
                if p.is_file()]
        return not busy

    def run(self, deadline: float = 180.0) -> None:
        with self.serving() as sink:
            with smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.diff.example",
                              timeout=60) as client:
                for case in self.spec.cases:
                    self.outcomes[case.n] = self.send(client, case)
            end = time.monotonic() + deadline
            want = self.expected_deliveries()
            while time.monotonic() < end and not (len(sink.messages) >= want and self.settled()):
                time.sleep(0.1)
            trust = TrustStore.load([self.root / "ca.pem"])
            keys = self.pki.keys()
            for mail_from, rcpts, data in sink.messages:
                n = case_of(data, trust, keys)
                if n is not None and n in self.outcomes:
                    self.outcomes[n].arrived.append((mail_from, rcpts, data))
                else:  # e.g. a notification: compared for the whole gateway
                    self.unmatched.append((mail_from, rcpts, data))
        for qdir in (self.root / "data" / "quarantine").glob("*"):
            self.quarantined[qdir.name] = sum(1 for p in qdir.iterdir() if not p.name.startswith("."))

    def differences(self) -> list[str]:
        """One report per case whose delivery differs from its prediction."""
        trust = TrustStore.load([self.root / "ca.pem"])
        keys = self.pki.keys()
        reports: list[str] = []
        predicted_q: Counter[str] = Counter()
        other: Counter[tuple[str, tuple[str, ...], str]] = Counter()
        for case in self.spec.cases:
            t, got = self.predictions[case.n], self.outcomes[case.n]
            problems: list[str] = []
            want_refused = {r for r, d in t.recipients.items() if d == "refused"}
            if got.error and want_refused != set(case.rcpts):
                problems.append(f"serve refused the message: {got.error}")
            if set(got.refused) != want_refused and not got.error:
                problems.append(f"refused at RCPT: predicted {sorted(want_refused)}, "
                                f"serve {sorted(got.refused)}")
            predicted: Counter[tuple[str, tuple[str, ...], str]] = Counter()
            for m in t.leaving:
                if m.quarantine:
                    predicted_q[m.quarantine] += 1
                    continue
                key = (m.mail_from, tuple(sorted(m.rcpts)), canonical(m.data, m.mail_from, trust, keys))
                if case_of(m.data, trust, keys) == case.n:
                    predicted[key] += 1
                else:
                    other[key] += 1
            actual = Counter((f, tuple(sorted(r)), canonical(d, f, trust, keys))
                             for f, r, d in got.arrived)
            if predicted != actual:
                problems.append("delivered messages differ:")
                for key in (predicted - actual):
                    problems.append(f"  predicted, not delivered: from <{key[0]}> to {key[1]}:\n"
                                    + _indent(key[2]))
                for key in (actual - predicted):
                    problems.append(f"  delivered, not predicted: from <{key[0]}> to {key[1]}:\n"
                                    + _indent(key[2]))
            if problems:
                reports.append(f"case {case.n} (gateway {self.spec.index}, rcpts {case.rcpts}):\n"
                               + "\n".join(problems) + "\n--- predicted trace (filterlang test -c):\n"
                               + to_text(t) + "\n--- serve's tracking for it:\n"
                               + self.tracking(case) + "\n--- serve's log tail:\n" + self.log_tail())
        arrived_other = Counter((f, tuple(sorted(r)), canonical(d, f, trust, keys))
                                for f, r, d in self.unmatched)
        if other != arrived_other:
            reports.append(f"gateway {self.spec.index}: messages of no single case differ:\n"
                           + "\n".join(f"  predicted, not delivered: {k[:2]}\n{_indent(k[2])}"
                                       for k in other - arrived_other)
                           + "\n".join(f"  delivered, not predicted: {k[:2]}\n{_indent(k[2])}"
                                       for k in arrived_other - other))
        if predicted_q != self.quarantined:
            reports.append(f"gateway {self.spec.index}: quarantined messages: predicted "
                           f"{dict(predicted_q)}, serve {dict(self.quarantined)}")
        return reports

    def tracking(self, case: Case) -> str:
        path = self.root / "data" / "tracking.jsonl"
        if not path.exists():
            return "(no tracking log)"
        return "\n".join(line for line in path.read_text().splitlines()
                         if case.mail_from in line)[-3000:]

    def log_tail(self) -> str:
        path = self.root / "serve.log"
        return path.read_text(errors="replace")[-1500:] if path.exists() else ""


def _indent(text: str) -> str:
    return "\n".join("      " + line for line in text.splitlines()[:60])
