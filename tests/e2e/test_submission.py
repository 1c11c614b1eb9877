"""Authenticated submission (issue 17 item 4) through `filterlang serve` with swaks as the
users' mail client: SMTP AUTH PLAIN and LOGIN over STARTTLS against a users file that
`filterlang users` wrote, relaying for the authenticated user, the user's name in the filters,
refusal before STARTTLS, wrong passwords and the per-IP lock-out.

The listener's certificate is made here with openssl (a test CA), never fetched.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import CA, FILTERLANG, Gateway, Received, Sink, dialogue, run, running

ALICE, PASSWORD = "alice@b.example", "correct horse battery"
CAROL = "carol@partner.example"  # outside local_domains: only a session that may relay
HOSTNAME = "submit.b.example"

STAMP_FILTER = """
stamp_submitter:
  if smtp-auth-id-matches('*Any') {
      insert-header('X-Submitted-By', '$SMTPAuthID');
  }
"""


@pytest.fixture(scope="module")
def tls_pair() -> Iterator[tuple[Path, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (.ci/run installs it)")
    if shutil.which("swaks") is None:
        pytest.skip("swaks is not installed (.ci/run installs it)")
    probe = subprocess.run(["swaks", "--support"], capture_output=True, text=True)
    if "=== TLS supported" not in probe.stdout + probe.stderr:
        pytest.skip("swaks cannot do STARTTLS: install libnet-ssleay-perl (.ci/run does)")
    folder = Path(tempfile.mkdtemp(prefix="fl-submit-pki-"))
    ca = CA(folder, "Submission Test CA")
    yield ca.tls_identity(folder, "submit", HOSTNAME, [HOSTNAME])
    shutil.rmtree(folder, ignore_errors=True)


def users(path: Path, *args: str, password: str | None = None) -> subprocess.CompletedProcess[bytes]:
    """`filterlang users -f PATH ...`, the password on standard input as a script gives it."""
    return run(FILTERLANG, "users", "-f", path, *args, check=False,
               input=None if password is None else (password + "\n").encode())


def submission_gateway(root: Path, tls: tuple[Path, Path], sink: Sink, *,
                       max_failures: int = 5) -> Gateway:
    root.mkdir(parents=True, exist_ok=True)
    added = users(root / "users.db", "add", ALICE, password=PASSWORD)
    assert added.returncode == 0, added.stderr
    # A second listener that takes nothing without AUTH: the submission port proper.
    return Gateway(root, next_hop=sink.port, filters={"stamp.filter": STAMP_FILTER},
                   top=f'hostname = "{HOSTNAME}"',
                   listener=f"""tls_cert = "{tls[0]}"
tls_key = "{tls[1]}"
auth = ["PLAIN", "LOGIN"]
users_file = "users.db"
auth_max_failures = {max_failures}
auth_failure_window = 60
auth_failure_delay = 0.1
""")


def swaks(port: int, *args: str, source: str = "127.0.0.1", to: str = CAROL,
          subject: str = "submitted") -> tuple[int, str]:
    """swaks as a user's mail client; (exit status, the whole dialogue)."""
    proc = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(port), "--local-interface", source,
         "--ehlo", "laptop.example", "--from", ALICE, "--to", to,
         "--header", f"Subject: {subject}", "--body", "Hello from the road.", "--timeout", "30",
         *args], capture_output=True, text=True, timeout=90)
    return proc.returncode, proc.stdout + proc.stderr


def auth_args(mech: str = "PLAIN", password: str = PASSWORD, user: str = ALICE) -> list[str]:
    return ["--tls", "--auth", mech, "--auth-user", user, "--auth-password", password]


def arrived(gw: Gateway, sink: Sink, rcpt: str, subject: str) -> Received:
    """The one message with this subject at the next hop for `rcpt` (swaks writes its own
    Message-ID)."""
    got = sink.wait_for(rcpt, explain=gw.explain, match=lambda m: m.header("Subject") == subject)
    assert len(got) == 1, got
    return got[0]


@pytest.mark.interop
def test_auth_over_starttls_relays_and_the_filters_see_the_user(
        tmp_path: Path, tls_pair: tuple[Path, Path], sink: Sink) -> None:
    """AUTH PLAIN and AUTH LOGIN over STARTTLS with the right password: the message for a
    domain that is not ours is accepted (the session may relay), reaches the next hop with the
    filter's header naming the user and a Received line `with ESMTPSA`, and tracking says who
    submitted it. The same message without AUTH is refused as relaying."""
    gw = submission_gateway(tmp_path / "gw", tls_pair, sink)
    with running(gw):
        code, text = swaks(gw.port, *auth_args("PLAIN"), subject="plain")
        assert code == 0, text
        assert "235 2.7.0 Authentication successful" in text
        code, text = swaks(gw.port, *auth_args("LOGIN"), subject="login")
        assert code == 0, text
        got = arrived(gw, sink, CAROL, "plain")
        assert got.header("X-Submitted-By") == ALICE, got.headers.decode()
        received = got.header("Received") or ""
        assert f"by {HOSTNAME} (filterlang) with ESMTPSA" in received, received
        assert ALICE not in received  # Postfix's default: the user name stays private
        rec = gw.wait_event(got.header("Message-ID") or "", "received")
        assert rec["auth_user"] == ALICE, rec
        assert arrived(gw, sink, CAROL, "login").header("X-Submitted-By") == ALICE

        # No AUTH (but TLS): the default policy takes only local_domains.
        code, text = swaks(gw.port, "--tls")
        assert code != 0 and "550 5.7.1 Relaying denied" in text, text
        # Unauthenticated mail for our own domain is still taken, and carries no user.
        code, text = swaks(gw.port, "--tls", to="bob@b.example", subject="anonymous")
        assert code == 0, text
        got = arrived(gw, sink, "bob@b.example", "anonymous")
        assert got.header("X-Submitted-By") is None
        assert "with ESMTPS " in (got.header("Received") or "")


@pytest.mark.interop
def test_no_auth_before_starttls_and_wrong_passwords(
        tmp_path: Path, tls_pair: tuple[Path, Path], sink: Sink) -> None:
    """Before STARTTLS the EHLO reply offers no AUTH and AUTH is answered 538 5.7.11 (the
    password never crosses in clear); a wrong password or an unknown user gets 535 5.7.8; a
    user removed with `filterlang users remove` is refused at once, without a restart."""
    gw = submission_gateway(tmp_path / "gw", tls_pair, sink)
    with running(gw):
        code, text = swaks(gw.port, "--auth", "PLAIN", "--auth-user", ALICE,
                           "--auth-password", PASSWORD)
        assert code != 0 and "*** Host did not advertise authentication" in text, text
        assert "<-  250-STARTTLS" in text and "250-AUTH" not in text, text
        # A client that sends AUTH anyway (with its password, in clear).
        got = dialogue(gw.port, [b"EHLO laptop.example", b"AUTH PLAIN AGFsaWNlAHg="])
        assert "AUTH" not in got[1], got[1]
        assert got[2].startswith("538 5.7.11"), got

        code, text = swaks(gw.port, *auth_args(password="wrong"))
        assert code != 0 and "535 5.7.8 Authentication credentials invalid" in text, text
        code, text = swaks(gw.port, *auth_args(user="mallory@b.example"))
        assert code != 0 and "535 5.7.8" in text, text
        assert not sink.messages

        removed = users(gw.root / "users.db", "remove", ALICE)
        assert removed.returncode == 0, removed.stderr
        code, text = swaks(gw.port, *auth_args())
        assert code != 0 and "535 5.7.8" in text, text


@pytest.mark.interop
def test_failed_attempts_lock_the_address_out(
        tmp_path: Path, tls_pair: tuple[Path, Path], sink: Sink) -> None:
    """With auth_max_failures = 3, the third wrong password from one address is answered
    421 4.7.0 and the connection closed; from then on even the right password from that
    address gets 421 until the window has passed, while another address authenticates."""
    gw = submission_gateway(tmp_path / "gw", tls_pair, sink, max_failures=3)
    with running(gw):
        for _ in range(2):
            code, text = swaks(gw.port, *auth_args(password="guess"), source="127.0.0.5")
            assert "535 5.7.8" in text, text
        code, text = swaks(gw.port, *auth_args(password="guess"), source="127.0.0.5")
        assert code != 0 and "421 4.7.0 Too many failed authentication attempts" in text, text
        code, text = swaks(gw.port, *auth_args(), source="127.0.0.5")
        assert code != 0 and "421 4.7.0 Too many failed authentication attempts" in text, text
        assert "235" not in text
        code, text = swaks(gw.port, *auth_args(), source="127.0.0.6")
        assert code == 0, text
        arrived(gw, sink, CAROL, "submitted")
        assert "too many failed AUTH attempts" in gw.log_text()


@pytest.mark.interop
def test_auth_required_listener(tmp_path: Path, tls_pair: tuple[Path, Path], sink: Sink) -> None:
    """A listener with auth_required: MAIL without AUTH is answered 530 5.7.0, even over
    STARTTLS and for our own domain; after AUTH the message goes through."""
    gw = submission_gateway(tmp_path / "gw", tls_pair, sink)
    gw.listener += "auth_required = true\n"
    gw.write_config()
    with running(gw):
        code, text = swaks(gw.port, "--tls", to="bob@b.example")
        assert code != 0 and "530 5.7.0 Authentication required" in text, text
        code, text = swaks(gw.port, *auth_args())
        assert code == 0, text
        arrived(gw, sink, CAROL, "submitted")


def test_users_command(tmp_path: Path) -> None:
    """`filterlang users` through the real command: the password from standard input (never
    argv), stored as an argon2id hash in a 0600 file; list, change, remove, and one clear error
    for each wrong input."""
    db = tmp_path / "users.db"
    assert users(db, "list").returncode == 2  # not there yet: says how to create it
    done = users(db, "add", "Alice@B.example", password="first")
    assert done.returncode == 0 and b"added alice@b.example" in done.stderr
    assert users(db, "add", "bob@b.example", password="second").returncode == 0
    text = db.read_text()
    assert "first" not in text and "second" not in text
    assert re.search(r"^alice@b\.example:\$argon2id\$", text, re.M), text
    assert db.stat().st_mode & 0o777 == 0o600
    assert users(db, "list").stdout.decode().split() == ["alice@b.example", "bob@b.example"]
    changed = users(db, "add", "alice@b.example", password="third")
    assert changed.returncode == 0 and b"password changed" in changed.stderr
    assert users(db, "remove", "bob@b.example").returncode == 0
    assert users(db, "list").stdout.decode().split() == ["alice@b.example"]

    missing = users(db, "remove", "nobody@b.example")
    assert missing.returncode == 1 and b"no user 'nobody@b.example'" in missing.stderr
    empty = users(db, "add", "carol@b.example", password="")
    assert empty.returncode == 2 and b"empty password" in empty.stderr
    bad = users(db, "add", "carol:x", password="pw")
    assert bad.returncode == 2 and b"holds ':'" in bad.stderr
    # A password on the command line is not an option there is.
    argv = run(FILTERLANG, "users", "-f", db, "add", "dave", "--password", "pw", check=False)
    assert argv.returncode == 2
    # A line the command cannot read is never rewritten away.
    db.write_text(db.read_text() + "eve:plaintext\n")
    refused = users(db, "add", "frank@b.example", password="pw")
    assert refused.returncode == 2 and f"{db}:3: the password of 'eve'".encode() in refused.stderr
    assert "frank" not in db.read_text()


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    """Each wrong submission setting is one error naming its key: AUTH without TLS, an unknown
    mechanism, no users file, a users file that does not exist or holds a clear password."""
    (tmp_path / "plain.db").write_text("alice:secret\n")
    cases = {
        'auth = ["PLAIN"]\nusers_file = "none.db"':
            ["listeners[0].auth: SMTP AUTH is offered only over TLS",
             "listeners[0].users_file: ", "none.db does not exist; create it with `filterlang "
             "users -f"],
        'tls_cert = "c.pem"\ntls_key = "k.pem"\nauth = ["PLAIN", "CRAM-MD5"]':
            ["listeners[0].auth[1]: 'CRAM-MD5' is not a mechanism",
             "listeners[0].users_file: a listener with auth needs the users"],
        'tls_cert = "c.pem"\ntls_key = "k.pem"\nauth = ["PLAIN"]\nusers_file = "plain.db"':
            ["plain.db:1: the password of 'alice' is not an argon2 hash"],
        "auth_required = true": ["listeners[0].auth_required: requiring AUTH needs auth"],
    }
    for listener, wanted in cases.items():
        (tmp_path / "gateway.toml").write_text(
            f'[[listeners]]\n{listener}\n[delivery]\nmaildir = "m"\n')
        proc = run(FILTERLANG, "serve", "--check", "-c", tmp_path / "gateway.toml", check=False)
        err = proc.stderr.decode()
        assert proc.returncode == 2, err
        for want in wanted:
            assert want in err, f"{want!r} not in:\n{err}"
