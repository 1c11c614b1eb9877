"""The scanning clients and stages against a real Rspamd and a real clamd on loopback (issue 16
item 5): what each answers, the per-policy behaviour over splinters (verdicts per splinter,
actions, Subject tags), the skip flags, a scanner that does not answer, the configuration's
errors, and the trace `filterlang test -c` prints."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.config.config import ConfigError, load_config
from runtime.config.scanning import AntiSpam, AntiVirus
from runtime.engine.providers.scanners import ScannerError, clamd_scan, rspamd_check
from runtime.mta.spool import Envelope, Spool
from runtime.mta.supervisor import make_runner
from runtime.mta.transport import MemoryTransport
from runtime.pipeline.stages import build_stages
from tests.e2e.harness import FILTERLANG, free_port
from tests.e2e.scanners import EICAR, GTUBE, Clamd, Rspamd, have_clamd, have_rspamd, with_attachment
from tests.gateway.queue_support import run_queue

needs_rspamd = pytest.mark.skipif(not have_rspamd(), reason="rspamd is not installed "
                                  "(apt-get install rspamd; .ci/run installs it)")
needs_clamd = pytest.mark.skipif(not have_clamd(), reason="clamd is not installed "
                                 "(apt-get install clamav-daemon; .ci/run installs it)")


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rspamd]:
    if not have_rspamd():
        pytest.skip("rspamd is not installed (apt-get install rspamd; .ci/run installs it)")
    with Rspamd(tmp_path_factory.mktemp("rspamd")) as server:
        yield server


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    if not have_clamd():
        pytest.skip("clamd is not installed (apt-get install clamav-daemon; .ci/run installs it)")
    with Clamd(tmp_path_factory.mktemp("clamd")) as server:
        yield server


def plain(subject: str, body: bytes) -> bytes:
    return (f"From: <eve@outside.example>\r\nTo: <bob@b.example>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@test>\r\n\r\n").encode() + body + b"\r\n"


SPAM = plain("cheap pills", b"Buy now. " + GTUBE)
HAM = plain("lunch", b"Lunch at noon?")
INFECTED = with_attachment("eve@outside.example", "bob@b.example", "invoice", EICAR)


# --- the clients ---------------------------------------------------------------------------------

def spam_cfg(server: Rspamd) -> AntiSpam:
    return AntiSpam("127.0.0.1", server.port, 5.0)


def check(cfg: AntiSpam, data: bytes):  # type: ignore[no-untyped-def]
    return rspamd_check(cfg, data, ip="192.0.2.7", helo="mx.outside.example",
                        mail_from="eve@outside.example", rcpts=("bob@b.example", "c@b.example"),
                        user="", queue_id="Q1")


def test_rspamd_reads_gtube_as_spam_and_plain_mail_as_ham(rspamd: Rspamd) -> None:
    spam = check(spam_cfg(rspamd), SPAM)
    assert (spam.verdict, spam.action, spam.score) == ("spam", "reject", 15.0)
    assert "GTUBE" in spam.symbols
    ham = check(spam_cfg(rspamd), HAM)
    assert (ham.verdict, ham.action) == ("ham", "no action")


def test_clamd_finds_eicar_over_tcp_and_the_local_socket(clamd: Clamd) -> None:
    tcp = AntiVirus("127.0.0.1", clamd.port, timeout=5.0)
    local = AntiVirus(socket=str(clamd.socket), timeout=5.0)
    for cfg in (tcp, local):
        found = clamd_scan(cfg, INFECTED)
        assert (found.verdict, found.name) == ("infected", "Eicar-Test-Signature.UNOFFICIAL")
        assert clamd_scan(cfg, HAM).verdict == "clean"
    # Larger than max_size: not sent, unscannable; larger than clamd's StreamMaxLength (1M in
    # the test configuration): clamd's own refusal, unscannable too.
    small = AntiVirus("127.0.0.1", clamd.port, timeout=5.0, max_size=1024)
    assert clamd_scan(small, INFECTED + b"x" * 2048).verdict == "unscannable"
    big = clamd_scan(tcp, HAM + b"y" * (1100 * 1024))
    assert big.verdict == "unscannable", big


def test_a_scanner_that_does_not_answer_is_an_error_naming_it() -> None:
    port = free_port()
    with pytest.raises(ScannerError, match=rf"rspamd at http://127.0.0.1:{port} did not answer"):
        check(AntiSpam("127.0.0.1", port, 1.0), HAM)
    with pytest.raises(ScannerError, match=rf"clamd at tcp://127.0.0.1:{port} did not answer"):
        clamd_scan(AntiVirus("127.0.0.1", port, timeout=1.0), HAM)
    with pytest.raises(ScannerError, match="clamd at /nonexistent/clamd.ctl did not answer"):
        clamd_scan(AntiVirus(socket="/nonexistent/clamd.ctl", timeout=1.0), HAM)


# --- the stages, through the queue runner ------------------------------------------------------

BASE = """
message_filters = ["m.filter"]
local_domains = ["b.example", "sales.example"]
[storage]
data_dir = "data"
[[listeners]]
port = 2525
[quarantines.Spam]
[quarantines.Virus]
[delivery]
relay = "127.0.0.1:2526"
"""
STAMP = """
content-filter stamp:
    direction incoming
    if true {
        insert-header('X-Verdicts', 'spam=$SpamVerdict score=$SpamScore virus=$VirusVerdict $VirusName');
    }
"""


def runner(tmp_path: Path, rspamd_url: str, clamd_address: str, policies: str,
           message_filter: str = "", top: str = "") -> tuple[MemoryTransport, Spool]:
    (tmp_path / "gateway.toml").write_text(
        top + BASE + f'[antispam]\nrspamd = "{rspamd_url}"\ntimeout = 3\n'
        f'[antivirus]\nclamd = "{clamd_address}"\ntimeout = 3\n' + policies)
    (tmp_path / "m.filter").write_text(message_filter)
    (tmp_path / "c.filter").write_text(STAMP)
    load_config(tmp_path / "gateway.toml")  # (each deliver() loads it again, as a restart does)
    return MemoryTransport(), Spool(tmp_path / "spool")


def deliver(tmp_path: Path, t: MemoryTransport, spool: Spool, data: bytes,
            rcpts: tuple[str, ...] = ("bob@b.example",)) -> dict[tuple[str, ...], bytes]:
    config = load_config(tmp_path / "gateway.toml")
    r = make_runner(config, spool, transport=t, stages=build_stages(config))
    spool.store(Envelope("eve@outside.example", rcpts, peer="192.0.2.7", policy="default"), data)
    run_queue(r)
    return {s[2]: s[3] for s in t.sent}


def header(data: bytes, name: str) -> str | None:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        k, _, v = line.partition(b":")
        if k.decode().lower() == name.lower():
            return v.strip().decode()
    return None


SPLIT = """
[incoming_policies.sales]
recipients = ["@sales.example"]
content_filters = ["c.filter"]
antispam = false
antivirus = false
[incoming_policies.Default]
content_filters = ["c.filter"]
spam_subject_tag = "[SPAM]"
"""


def test_each_splinter_sees_what_its_policy_scans(rspamd: Rspamd, clamd: Clamd,
                                                  tmp_path: Path) -> None:
    t, spool = runner(tmp_path, rspamd.url, clamd.address, SPLIT)
    sent = deliver(tmp_path, t, spool, SPAM, ("bob@b.example", "sam@sales.example"))
    scanned, unscanned = sent[("bob@b.example",)], sent[("sam@sales.example",)]
    assert header(scanned, "X-Verdicts") == "spam=spam score=15 virus=clean"
    assert header(scanned, "Subject") == "[SPAM] cheap pills"
    assert header(unscanned, "X-Verdicts") == "spam=None score=None virus=None"
    assert header(unscanned, "Subject") == "cheap pills"


def test_one_splinter_tagged_in_place_and_virus_dropped(rspamd: Rspamd, clamd: Clamd,
                                                        tmp_path: Path) -> None:
    t, spool = runner(tmp_path, rspamd.url, clamd.address, SPLIT)
    sent = deliver(tmp_path, t, spool, SPAM)
    assert header(sent[("bob@b.example",)], "Subject") == "[SPAM] cheap pills"
    t.sent.clear()
    # virus_action defaults to drop: nothing leaves; the unscanned policy still gets its copy.
    sent = deliver(tmp_path, t, spool, INFECTED, ("bob@b.example", "sam@sales.example"))
    assert list(sent) == [("sam@sales.example",)]


def test_spam_and_virus_quarantines(rspamd: Rspamd, clamd: Clamd, tmp_path: Path) -> None:
    policies = """
[incoming_policies.Default]
spam_action = "quarantine"
spam_quarantine = "Spam"
virus_action = "quarantine"
virus_quarantine = "Virus"
"""
    t, spool = runner(tmp_path, rspamd.url, clamd.address, policies)
    assert deliver(tmp_path, t, spool, SPAM) == {}
    assert deliver(tmp_path, t, spool, INFECTED) == {}
    assert deliver(tmp_path, t, spool, HAM) != {}
    held = {q: list((tmp_path / "data" / "quarantine" / q).iterdir()) for q in ("Spam", "Virus")}
    assert all(len(files) == 1 for files in held.values()), held


def test_skip_flags_and_a_scanner_down(rspamd: Rspamd, tmp_path: Path) -> None:
    skip = "trusted:\n  if true {\n    skip-spamcheck();\n    skip-viruscheck();\n  }\n"
    t, spool = runner(tmp_path, rspamd.url, f"tcp://127.0.0.1:{free_port()}",
                      "[incoming_policies.Default]\ncontent_filters = [\"c.filter\"]\n", skip)
    sent = deliver(tmp_path, t, spool, SPAM)
    # Neither scanner was asked (clamd is not even there): both verdicts unavailable.
    assert header(sent[("bob@b.example",)], "X-Verdicts") == "spam=None score=None virus=None"
    t.sent.clear()
    t, spool = runner(tmp_path, rspamd.url, f"tcp://127.0.0.1:{free_port()}",
                      "[incoming_policies.Default]\ncontent_filters = [\"c.filter\"]\n",
                      top='on_filter_error = "tempfail"\n')
    assert deliver(tmp_path, t, spool, HAM) == {}
    assert len(spool.list("deferred")) == 1


# --- configuration -----------------------------------------------------------------------------

@pytest.mark.parametrize(("toml", "problem"), [
    ('[antispam]\nrspamd = "127.0.0.1:11333"\n',
     "antispam.rspamd: '127.0.0.1:11333': give Rspamd's normal worker as http://HOST:PORT"),
    ("[antispam]\ntimeout = 3\n", "antispam.rspamd: is required"),
    ('[antivirus]\nclamd = "clamd.ctl"\n',
     "antivirus.clamd: 'clamd.ctl': give clamd's TCPSocket as tcp://HOST:PORT"),
    ('[antivirus]\nclamd = "tcp://127.0.0.1"\n', "antivirus.clamd: 'tcp://127.0.0.1': give tcp"),
    ('[antivirus]\nclamd = "/run/c.ctl"\nmax_sise = 5\n',
     "antivirus.max_sise: unknown key; did you mean 'max_size'?"),
    ('[incoming_policies.Default]\nspam_action = "quarantine"\n',
     "incoming_policies.Default.spam_quarantine: spam_action = \"quarantine\" needs"),
    ('[incoming_policies.Default]\nvirus_action = "quarantine"\nvirus_quarantine = "Nope"\n',
     "incoming_policies.Default.virus_quarantine: no quarantine 'Nope'; add [quarantines.Nope]"),
    ('[incoming_policies.Default]\nvirus_action = "bounce"\n',
     "incoming_policies.Default.virus_action: must be one of deliver, drop, quarantine"),
])
def test_configuration_errors_name_the_key(tmp_path: Path, toml: str, problem: str) -> None:
    (tmp_path / "gateway.toml").write_text(BASE.replace('message_filters = ["m.filter"]', "")
                                           + toml)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "gateway.toml")
    assert problem in str(err.value)
    assert len(str(err.value).splitlines()) == 1, str(err.value)


# --- filterlang test -c ------------------------------------------------------------------------

def test_the_offline_trace_shows_each_scanner_answer(rspamd: Rspamd, clamd: Clamd,
                                                     tmp_path: Path) -> None:
    runner(tmp_path, rspamd.url, clamd.address,
           "[incoming_policies.Default]\ncontent_filters = [\"c.filter\"]\n")
    (tmp_path / "spam.eml").write_bytes(SPAM)
    out = subprocess.run([str(FILTERLANG), "test", "-c", str(tmp_path / "gateway.toml"),
                          "--mail-from", "eve@outside.example", "--rcpt", "bob@b.example",
                          "--remote-ip", "192.0.2.7", str(tmp_path / "spam.eml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "anti-spam (rspamd):" in out.stdout, out.stdout
    assert "verdict=spam, score=15.0, action=reject" in out.stdout, out.stdout
    assert "anti-virus (clamd):" in out.stdout and "verdict=clean" in out.stdout, out.stdout


# --- suites state the scanners' answers ---------------------------------------------------------

SUITE_FILTER = """
content-filter held:
    direction incoming
    if spam-score >= 10 {
        insert-header('X-Held', '$SpamVerdict $SpamScore $VirusName');
    }
"""


@pytest.mark.parametrize(("scanning", "expect"), [
    ("{spam = 'spam', spam_score = 12, virus_name = 'Eicar'}",
     "[case.expect]\nheaders = {\"X-Held\" = '^spam 12 Eicar$'}"),
    ("{virus = 'clean'}", "[case.expect]\nnot_matched = [\"held\"]"),
])
def test_a_suite_states_what_the_scanners_answered(tmp_path: Path, scanning: str,
                                                   expect: str) -> None:
    (tmp_path / "f.filter").write_text(SUITE_FILTER)
    (tmp_path / "s.toml").write_text(
        f'filters = ["f.filter"]\n[[case]]\nname = "c"\nrcpt = ["bob@example.org"]\n'
        f"scanning = {scanning}\nraw = 'Subject: x\\n\\nbody\\n'\n{expect}\n")
    out = subprocess.run([str(FILTERLANG), "test", "--suite", str(tmp_path / "s.toml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_misspelt_scanning_key_is_named(tmp_path: Path) -> None:
    (tmp_path / "f.filter").write_text(SUITE_FILTER)
    (tmp_path / "s.toml").write_text(
        'filters = ["f.filter"]\n[[case]]\nname = "c"\nrcpt = ["bob@example.org"]\n'
        "scanning = {spam_scor = 3}\nraw = 'Subject: x\\n\\nbody\\n'\n")
    out = subprocess.run([str(FILTERLANG), "test", "--suite", str(tmp_path / "s.toml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "case 'c': scanning.spam_scor: unknown key; use spam, spam_score, virus, virus_name" \
        in out.stderr, out.stderr


@pytest.mark.parametrize(("data", "tagged"), [
    (b"From: a\r\nSubject: hi\r\n\r\nSubject: body\r\n", b"From: a\r\nSubject: [SPAM] hi\r\n\r\nSubject: body\r\n"),
    (b"From: a\nsubject:hi\n\nbody\n", b"From: a\nsubject:[SPAM] hi\n\nbody\n"),
    (b"From: a\r\n\r\nSubject: body\r\n", b"Subject: [SPAM]\r\nFrom: a\r\n\r\nSubject: body\r\n"),
])
def test_the_subject_tag_goes_in_the_header_only(data: bytes, tagged: bytes) -> None:
    from runtime.pipeline.stages.scanning import tag_subject

    assert tag_subject(data, "[SPAM]") == tagged


def test_splinters_with_different_spam_actions(rspamd: Rspamd, clamd: Clamd,
                                               tmp_path: Path) -> None:
    policies = """
[incoming_policies.sales]
recipients = ["@sales.example"]
content_filters = ["c.filter"]
[incoming_policies.Default]
spam_action = "quarantine"
spam_quarantine = "Spam"
"""
    t, spool = runner(tmp_path, rspamd.url, clamd.address, policies)
    sent = deliver(tmp_path, t, spool, SPAM, ("bob@b.example", "sam@sales.example"))
    # sales delivers positive spam (its filters see the verdict); Default parks its copy.
    assert list(sent) == [("sam@sales.example",)]
    assert header(sent[("sam@sales.example",)], "X-Verdicts") == "spam=spam score=15 virus=clean"
    assert len(list((tmp_path / "data" / "quarantine" / "Spam").iterdir())) == 1


# --- replayed: recorded verdicts stand for the scanners' answers -------------------------------

REPLAY_POLICIES = """
[incoming_policies.Default]
spam_action = "quarantine"
spam_quarantine = "Spam"
"""


@pytest.mark.parametrize(("answers", "anti_spam", "anti_virus", "outcome"), [
    ('scanning = {spam = "spam", spam_score = 15}\n',
     "verdict=spam, score=15.0", "skipped=no recorded verdict", "bob@b.example: quarantine(Spam)"),
    ('scanning = {virus = "infected", virus_name = "Eicar"}\n',
     "skipped=no recorded verdict", "verdict=infected, virus=Eicar", "bob@b.example: drop"),
    ("reputation = 1.0\n",
     "skipped=no recorded verdict", "skipped=no recorded verdict", "bob@b.example: deliver"),
])
def test_recorded_verdicts_drive_the_policy_actions_and_nothing_is_asked(
        tmp_path: Path, answers: str, anti_spam: str, anti_virus: str, outcome: str) -> None:
    """`filterlang test -c --services`: the gateway configures Rspamd and clamd, on ports where
    nothing answers. The recorded verdict stands for the scanner's answer, so the policy's
    action applies as the gateway would apply it, and no scanner is asked (no connection
    error in the trace). Before, the scanners were asked and the recorded verdict reached only
    the content filters: a recorded spam verdict was shown delivered."""
    runner(tmp_path, f"http://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}",
           REPLAY_POLICIES)
    (tmp_path / "answers.toml").write_text(answers)
    (tmp_path / "m.eml").write_bytes(HAM)
    out = subprocess.run([str(FILTERLANG), "test", "-c", str(tmp_path / "gateway.toml"),
                          "--services", str(tmp_path / "answers.toml"),
                          "--mail-from", "eve@outside.example", "--rcpt", "bob@b.example",
                          "--remote-ip", "192.0.2.7", str(tmp_path / "m.eml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "did not answer" not in text + out.stderr, text
    spam = text.split("anti-spam (rspamd):", 1)[1].split("anti-virus (clamd):", 1)
    assert anti_spam in spam[0] and anti_virus in spam[1], text
    assert outcome in text.split("recipients:", 1)[1], text
