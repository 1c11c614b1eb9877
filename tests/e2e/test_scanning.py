"""Anti-spam and anti-virus through `filterlang serve` (issue 16 item 5), against a real Rspamd
and a real clamd started by the tests on loopback (tests/e2e/scanners.py):

- a GTUBE message is spam to Rspamd: the content filter reads `spam-verdict` and `$SpamScore`
  and quarantines it;
- a message carrying the EICAR file is infected to clamd: the mail policy's virus action puts
  it in the virus quarantine, the signature's name in the tracking line;
- a clean message is delivered, its content filter having seen both verdicts (ham, clean);
- skip-spamcheck() in a message filter keeps a message from Rspamd;
- clamd stopped: under on_filter_error = "bypass" the message is delivered unscanned and the
  tracking line says why; under "tempfail" it waits (451 4.3.0) and is delivered once clamd is
  back;
- the policy's spam_action quarantines what Rspamd calls spam, and `filterlang test -c` with
  the scanner's answer recorded (--services) predicts the same for each message.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import FILTERLANG, Gateway, Sink, message, running, wait_until
from tests.e2e.scanners import EICAR, GTUBE, Clamd, Rspamd, have_clamd, have_rspamd, with_attachment

pytestmark = pytest.mark.skipif(
    not (have_rspamd() and have_clamd()),
    reason="rspamd and clamd are not installed (apt-get install rspamd clamav-daemon; .ci/run "
           "installs them)")

CONTENT = """
content-filter spam_held:
    direction incoming
    if spam-verdict == 'spam' {
        insert-header('X-Spam-Score', '$SpamScore');
        quarantine('Spam');
    }

content-filter scanned_stamp:
    direction incoming
    if (spam-verdict == 'ham') and (virus-verdict == 'clean') {
        insert-header('X-Scanned', 'spam=$SpamVerdict score=$SpamScore virus=$VirusVerdict');
    }
"""

SKIP = """
trusted_partner:
    if mail-from == '@partner\\\\.example$' {
        skip-spamcheck();
    }
"""


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rspamd]:
    with Rspamd(tmp_path_factory.mktemp("rspamd")) as server:
        yield server


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    with Clamd(tmp_path_factory.mktemp("clamd")) as server:
        yield server


def scanning_config(rspamd_url: str, clamd_address: str) -> str:
    return f"""
[antispam]
rspamd = "{rspamd_url}"
timeout = 5

[antivirus]
clamd = "{clamd_address}"
timeout = 5

[quarantines.Spam]
[quarantines.Virus]

[incoming_policies.Default]
content_filters = ["scan.filter"]
virus_action = "quarantine"
virus_quarantine = "Virus"
"""


def gateway(root: Path, sink: Sink, rspamd_url: str, clamd_address: str, top: str = "") -> Gateway:
    gw = Gateway(root, next_hop=sink.port, filters={"skip.filter": SKIP}, top=top,
                 extra=scanning_config(rspamd_url, clamd_address))
    (root / "scan.filter").write_text(CONTENT)
    return gw


def inbound(subject: str, body: bytes, sender: str = "eve@outside.example") -> bytes:
    return message(sender, "bob@b.example", subject, body)


def test_spam_virus_and_clean_mail(rspamd: Rspamd, clamd: Clamd, tmp_path: Path) -> None:
    sink = Sink()
    gw = gateway(tmp_path / "gw", sink, rspamd.url, clamd.address)
    with running(sink, gw):
        spam = inbound("cheap pills", b"Buy now.\r\n" + GTUBE + b"\r\n")
        infected = with_attachment("eve@outside.example", "bob@b.example", "your invoice", EICAR)
        clean = inbound("lunch", b"Lunch at noon?\r\n")
        trusted = message("ann@partner.example", "bob@b.example", "partner gtube",
                          b"Quoting the test string: " + GTUBE + b"\r\n")
        ids = [gw.send(sender, "bob@b.example", data, source="127.0.0.1")
               for data, sender in ((spam, "eve@outside.example"),
                                    (infected, "eve@outside.example"),
                                    (clean, "eve@outside.example"),
                                    (trusted, "ann@partner.example"))]
        spam_id, _, clean_id, trusted_id = ids

        rec = gw.wait_event(spam_id, "quarantine")
        assert rec["quarantine"] == "Spam"
        assert "anti-spam: spam (score 15, rspamd action 'reject')" in rec["trace"]
        held = gw.cli("quarantine", "list", "Spam")
        assert "cheap pills" in held or rec["queue_id"] in held, held

        rec = gw.wait_event("<your-invoice@test>", "quarantine")
        assert rec["quarantine"] == "Virus"
        assert "anti-virus: infected (Eicar-Test-Signature.UNOFFICIAL)" in rec["trace"]

        got, rec = gw.delivered(sink, "bob@b.example", clean_id)
        assert got.header("X-Scanned") == "spam=ham score=0 virus=clean"
        assert "anti-spam: ham (score 0, rspamd action 'no action')" in rec["trace"]
        assert "anti-virus: clean" in rec["trace"]

        # skip-spamcheck() in a message filter: Rspamd never sees it; the content filter's
        # spam rules are unavailable (false), so GTUBE in it does not hold it.
        got, rec = gw.delivered(sink, "bob@b.example", trusted_id)
        assert got.header("X-Spam-Score") is None and got.header("X-Scanned") is None
        assert "anti-spam: not scanned (skip-spamcheck() in a message filter)" in rec["trace"]


def test_clamd_down_follows_on_filter_error(rspamd: Rspamd, tmp_path: Path) -> None:
    sink = Sink()
    av = Clamd(tmp_path / "clamd")
    bypass = gateway(tmp_path / "bypass", sink, rspamd.url, av.address)
    held = gateway(tmp_path / "tempfail", sink, rspamd.url, av.address,
                   top='on_filter_error = "tempfail"')
    with running(sink, bypass, held):
        # Bypass (the default): delivered without the anti-virus verdict, and said so.
        data = with_attachment("eve@outside.example", "bob@b.example", "unscanned", EICAR)
        bypass.send("eve@outside.example", "bob@b.example", data, source="127.0.0.1")
        got, rec = bypass.delivered(sink, "bob@b.example", "<unscanned@test>")
        assert got.header("X-Scanned") is None  # virus-verdict unavailable: the rule is false
        text = "\n".join(rec["trace"])
        assert f"anti-virus error, scan bypassed: clamd at {av.address} did not answer" in text

        # Tempfail: the message waits, and goes out once clamd answers again.
        data = with_attachment("eve@outside.example", "bob@b.example", "waits", b"harmless")
        held.send("eve@outside.example", "bob@b.example", data, source="127.0.0.1")
        rec = held.wait_event("<waits@test>", "deferred")
        assert rec["reply"].startswith("451 4.3.0 anti-virus error: clamd at"), rec
        with av:
            got, rec = held.delivered(sink, "bob@b.example", "<waits@test>")
            wait_until("a clean verdict in the trace",
                       lambda: "anti-virus: clean" in rec["trace"] or None)


ACTION_POLICY = """
[quarantines.Spam]

[incoming_policies.Default]
spam_action = "quarantine"
spam_quarantine = "Spam"
"""


def predicted(gw: Gateway, data: bytes, answers: str) -> str:
    """`filterlang test -c` on gw's configuration, the scanner's answer recorded: the line of
    bob@b.example's disposition."""
    (gw.root / "m.eml").write_bytes(data)
    (gw.root / "answers.toml").write_text(answers)
    out = subprocess.run([str(FILTERLANG), "test", "-c", str(gw.config),
                          "--services", str(gw.root / "answers.toml"),
                          "--mail-from", "eve@outside.example", "--rcpt", "bob@b.example",
                          "--remote-ip", "127.0.0.1", str(gw.root / "m.eml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return next(line.strip() for line in out.stdout.split("recipients:", 1)[1].splitlines()
                if "bob@b.example:" in line)


def test_spam_action_and_its_offline_prediction_agree(rspamd: Rspamd, tmp_path: Path) -> None:
    sink = Sink()
    gw = Gateway(tmp_path / "gw", next_hop=sink.port,
                 extra=f'[antispam]\nrspamd = "{rspamd.url}"\ntimeout = 5\n' + ACTION_POLICY)
    with running(sink, gw):
        spam = inbound("cheap pills", b"Buy now.\r\n" + GTUBE + b"\r\n")
        ham = inbound("lunch", b"Lunch at noon?\r\n")
        spam_id = gw.send("eve@outside.example", "bob@b.example", spam, source="127.0.0.1")
        ham_id = gw.send("eve@outside.example", "bob@b.example", ham, source="127.0.0.1")
        rec = gw.wait_event(spam_id, "quarantine")  # no content filter: the policy's action
        assert rec["quarantine"] == "Spam", rec
        gw.delivered(sink, "bob@b.example", ham_id)
    # What Rspamd answered, recorded: the offline run shows what serve did with each message
    # (that it asks no scanner is tests/scanning's test_recorded_verdicts_...).
    rspamd_answer = 'scanning = {spam = "spam", spam_score = 15}\n'
    assert predicted(gw, spam, rspamd_answer) == "bob@b.example: quarantine(Spam)"
    assert predicted(gw, ham, 'scanning = {spam = "ham"}\n').startswith("bob@b.example: deliver")
