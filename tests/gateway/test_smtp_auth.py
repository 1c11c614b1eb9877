"""SMTP AUTH in the listener (issue 17 item 4), in process: relaying after AUTH and the policy
that forbids it, the envelope and Received line an authenticated message gets, MAIL's AUTH=
parameter, the direction its mail takes, and the password check kept off the event loop.
tests/e2e/test_submission.py runs the same through `filterlang serve` with swaks."""

from __future__ import annotations

import base64
import shutil
import smtplib
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime.config import users
from runtime.config.config import GatewayConfig, load_config

from .conftest import RunningListener

MSG = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: t\r\n\r\nhello\r\n"
PASSWORD = "s3cret pass"


@pytest.fixture
def auth_config(tmp_path: Path, make_config: Callable[..., GatewayConfig]
                ) -> Callable[..., GatewayConfig]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(tmp_path / "c.pem")], check=True, capture_output=True)
    users.write(tmp_path / "users.db",
                [users.UserLine(0, "alice@example.org", users.hash_password(PASSWORD))])

    def make(policy: str = "accept", listener: str = "", extra: str = "") -> GatewayConfig:
        config = make_config(policy=policy, extra=extra)
        text = config.source.read_text().replace(
            'name = "in"', 'name = "in"\ntls_cert = "c.pem"\ntls_key = "k.pem"\n'
            'auth = ["PLAIN", "LOGIN"]\nusers_file = "users.db"\nauth_failure_delay = 0\n'
            + listener)
        config.source.write_text(text)
        return load_config(config.source)

    return make


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[[GatewayConfig], RunningListener]]:
    started: list[RunningListener] = []

    def start(config: GatewayConfig) -> RunningListener:
        started.append(RunningListener(config))
        return started[-1]

    yield start
    for gw in started:
        gw.close()


def client(gw: RunningListener, tmp_path: Path) -> smtplib.SMTP:
    ctx = ssl.create_default_context(cafile=str(tmp_path / "c.pem"))
    ctx.check_hostname = False
    c = smtplib.SMTP("127.0.0.1", gw.port, timeout=10)
    c.ehlo()
    c.starttls(context=ctx)
    c.ehlo()
    return c


def plain(user: str = "alice@example.org", password: str = PASSWORD) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def test_authenticated_session_relays_and_is_recorded(
        tmp_path: Path, auth_config: Callable[..., GatewayConfig],
        served: Callable[[GatewayConfig], RunningListener]) -> None:
    gw = served(auth_config())
    with client(gw, tmp_path) as c:
        assert c.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]
        # Not yet authenticated: the ACCEPT policy takes only local_domains.
        c.mail("a@example.com")
        assert c.rcpt("carol@elsewhere.test")[0] == 550
        c.rset()
        assert c.docmd("AUTH", f"PLAIN {plain()}")[0] == 235
        assert c.docmd("AUTH", f"PLAIN {plain()}")[0] == 503  # once is enough
        # MAIL's AUTH= is accepted (RFC 4954 5) and never passed on.
        assert c.docmd("MAIL FROM:<a@example.com> AUTH=<>")[0] == 250
        assert c.rcpt("carol@elsewhere.test")[0] == 250
        assert c.data(MSG)[0] == 250
    (qid,) = gw.spool.list("incoming")
    env, data = gw.spool.read("incoming", qid)
    assert env.auth_user == "alice@example.org"
    assert not any(o.upper().startswith("AUTH=") for o in env.mail_options)
    assert b"(filterlang) with ESMTPSA id" in data.split(b"\r\n\r\n")[0]


def test_auth_relay_false_keeps_the_policy(
        tmp_path: Path, auth_config: Callable[..., GatewayConfig],
        served: Callable[[GatewayConfig], RunningListener]) -> None:
    config = auth_config()
    text = config.source.read_text().replace('[policies.accept]\naction = "ACCEPT"',
                                             '[policies.accept]\naction = "ACCEPT"\n'
                                             'auth_relay = false')
    config.source.write_text(text)
    gw = served(load_config(config.source))
    with client(gw, tmp_path) as c:
        assert c.docmd("AUTH", f"PLAIN {plain()}")[0] == 235
        c.mail("a@example.com")
        assert c.rcpt("carol@elsewhere.test")[0] == 550
        assert c.rcpt("bob@example.org")[0] == 250


def test_login_mechanism_and_malformed_answers(
        tmp_path: Path, auth_config: Callable[..., GatewayConfig],
        served: Callable[[GatewayConfig], RunningListener]) -> None:
    gw = served(auth_config())
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    with client(gw, tmp_path) as c:
        assert c.docmd("AUTH", "CRAM-MD5")[0] == 504
        assert c.docmd("AUTH", "PLAIN !!!")[0] == 501  # not base64
        assert c.docmd("AUTH", f"PLAIN {b64('no separators')}")[0] == 501
        # Acting for another user (an authzid that is not the user itself) is refused.
        other = base64.b64encode(f"bob\0alice@example.org\0{PASSWORD}".encode()).decode()
        assert c.docmd("AUTH", f"PLAIN {other}")[0] == 535
        assert c.docmd("AUTH", "LOGIN")[0] == 334
        assert c.docmd("*")[0] == 501  # the client gave up (RFC 4954 4)
        assert c.docmd("AUTH", f"LOGIN {b64('ALICE@example.org')}")[0] == 334
        code, text = c.docmd(b64(PASSWORD))
        assert code == 235, text  # names are matched without case
        c.mail("a@example.com")
        assert c.rcpt("carol@elsewhere.test")[0] == 250


def test_the_password_check_runs_off_the_event_loop(
        tmp_path: Path, auth_config: Callable[..., GatewayConfig],
        served: Callable[[GatewayConfig], RunningListener],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow check (argon2 costs ~50-150 ms; here 2 s) holds up only its own session: another
    client is answered at once meanwhile."""
    real = users.UsersFile.check

    def slow(self: users.UsersFile, name: str, password: str) -> bool:
        time.sleep(2.0)
        return real(self, name, password)

    monkeypatch.setattr(users.UsersFile, "check", slow)
    gw = served(auth_config())
    answers: list[int] = []

    def authenticate() -> None:
        with client(gw, tmp_path) as c:
            answers.append(c.docmd("AUTH", f"PLAIN {plain()}")[0])

    worker = threading.Thread(target=authenticate)
    worker.start()
    time.sleep(0.5)  # the AUTH is being checked now
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as other:
        start = time.monotonic()
        assert other.noop()[0] == 250
        waited = time.monotonic() - start
    worker.join(10)
    assert answers == [235]
    assert waited < 1.0, f"another session waited {waited:.2f} s for NOOP"


def test_auth_required_and_the_users_file_read_again(
        tmp_path: Path, auth_config: Callable[..., GatewayConfig],
        served: Callable[[GatewayConfig], RunningListener]) -> None:
    gw = served(auth_config(listener="auth_required = true\n"))
    with client(gw, tmp_path) as c:
        assert c.docmd("MAIL FROM:<a@example.com>") == (530, b"5.7.0 Authentication required")
        assert c.docmd("AUTH", f"PLAIN {plain('bob@example.org', 'pw2')}")[0] == 535
    # A user added while the listener runs can authenticate at once.
    db = tmp_path / "users.db"
    users.write(db, [*users.read(db), users.UserLine(0, "bob@example.org",
                                                       users.hash_password("pw2"))])
    with client(gw, tmp_path) as c:
        assert c.docmd("AUTH", f"PLAIN {plain('bob@example.org', 'pw2')}")[0] == 235
        assert c.docmd("MAIL FROM:<a@example.com>")[0] == 250


def test_users_file_parse_names_each_bad_line() -> None:
    text = ("# comment\n\nalice:$argon2id$v=19$x\nbob\nAlice:$argon2id$v=19$y\n"
            "carol:secret\nd ave:$argon2id$z\n")
    found, problems = users.parse(text, "users.db")
    assert [u.name for u in found] == ["alice"]
    assert problems == [
        "users.db:4: not 'name:hash'; write one user a line, as `filterlang users add` does",
        "users.db:5: 'alice' is also on line 3; keep one",
        "users.db:6: the password of 'carol' is not an argon2 hash (never a password in "
        "clear); set it with `filterlang users add`",
        "users.db:7: the user name holds ':', '#', white space or a control character",
    ]


def test_offline_test_command_relays_and_sends_out_for_an_authenticated_user(
        tmp_path: Path) -> None:
    """`filterlang test -c --auth-user` answers as the listener would: the recipient outside
    local_domains is taken, and the message takes the outgoing direction."""
    import sys

    (tmp_path / "gateway.toml").write_text(
        'local_domains = ["example.org"]\n[[listeners]]\nname = "in"\n'
        '[delivery]\nmaildir = "m"\n')
    (tmp_path / "m.eml").write_bytes(b"From: a@example.org\r\nSubject: x\r\n\r\nhi\r\n")
    cli = Path(sys.executable).parent / "filterlang"
    args = [str(cli), "test", "-c", str(tmp_path / "gateway.toml"), "--rcpt", "c@else.test",
            str(tmp_path / "m.eml")]
    authed = subprocess.run([*args, "--auth-user", "alice"], capture_output=True, text=True)
    assert "auth_user=alice" in authed.stdout, authed.stdout + authed.stderr
    assert "direction=outgoing" in authed.stdout
    assert "c@else.test: deliver" in authed.stdout
    anonymous = subprocess.run(args, capture_output=True, text=True)
    assert "c@else.test: refused (550 5.7.1 Relaying denied)" in anonymous.stdout
