"""Operator commands: quarantine list|show|release|delete and queue list|show|flush|retry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runtime.commands.cli import main
from runtime.config.config import load_config
from runtime.mta.queue import QueueRunner
from runtime.mta.spool import Envelope, Spool, SpoolError
from runtime.mta.supervisor import quarantines_for, spool_for
from runtime.mta.transport import MemoryTransport, Result
from runtime.pipeline.flow import QUARANTINE, InFlight, build_pipeline

from .queue_support import run_queue

CONFIG = """
[[listeners]]
port = 2525
[quarantines.policy]
[storage]
data_dir = "data"
[delivery]
relay = "127.0.0.1:10025"
"""
MSG = b"Subject: q\r\n\r\nparked\r\n"


class QuarantineAll:
    name = "message_filters"

    def process(self, msg: InFlight) -> None:
        msg.quarantine = "policy"
        for rcpt in msg.dispositions:
            msg.dispositions[rcpt] = QUARANTINE


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG)
    return path


def test_quarantine_round_trip(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config(cfg)
    spool, transport = spool_for(config), MemoryTransport()
    runner = QueueRunner(spool, config.delivery, transport, quarantines=quarantines_for(config),
                         stages=build_pipeline({"message_filters": QuarantineAll()}))
    spool.store(Envelope("a@example.com", ("b@example.org",)), MSG)
    run_queue(runner)
    assert transport.sent == []
    assert main(["quarantine", "-c", str(cfg), "list"]) == 0
    assert capsys.readouterr().out == "policy\t1\n"
    assert main(["quarantine", "-c", str(cfg), "list", "policy"]) == 0
    qid = capsys.readouterr().out.split("\t")[0]
    assert main(["quarantine", "-c", str(cfg), "show", "policy", qid]) == 0
    assert "parked" in capsys.readouterr().out
    assert main(["quarantine", "-c", str(cfg), "release", "policy", qid]) == 0
    run_queue(runner)  # released mail re-enters delivery, not the filter that parked it
    assert [s[3] for s in transport.sent] == [MSG]
    assert main(["quarantine", "-c", str(cfg), "delete", "policy", qid]) == 1
    assert "no message" in capsys.readouterr().err


@pytest.mark.parametrize("argv,err", [
    (["quarantine", "list", "nope"], "no quarantine named 'nope'"),
    (["quarantine", "show", "policy", "../../etc"], "no message"),
    (["queue", "show", "123"], "no message '123'"),
    (["queue", "retry", "123"], "not deferred or on hold"),
])
def test_errors_are_one_line(cfg: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                             err: str) -> None:
    assert main([argv[0], "-c", str(cfg), *argv[1:]]) == 1
    out = capsys.readouterr().err
    assert err in out and out.count("\n") == 1


def test_queue_list_flush_retry(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config(cfg)
    spool = spool_for(config)
    transport = MemoryTransport(answers={"b@example.org": Result(451, "4.4.1 down")})
    runner = QueueRunner(spool, config.delivery, transport)
    qid = spool.store(Envelope("a@example.com", ("b@example.org",)), MSG)
    run_queue(runner)
    assert main(["queue", "-c", str(cfg), "list"]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"{qid}\tdeferred\ta@example.com\tb@example.org") and "4.4.1" in line
    assert main(["queue", "-c", str(cfg), "show", qid]) == 0
    assert "Attempts: 1" in capsys.readouterr().out
    transport.answers.clear()
    assert run_queue(runner) == 0  # not due yet
    assert main(["queue", "-c", str(cfg), "flush"]) == 0
    assert run_queue(runner) == 1 and len(transport.sent) == 1
    held = spool.store(Envelope("a@example.com", ("c@example.org",)), MSG, state="hold")
    assert main(["queue", "-c", str(cfg), "retry", held]) == 0
    assert spool.list("incoming") == [held]


def test_serve_refuses_invalid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[listeners]]\nport = \"x\"\n")
    assert main(["serve", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not starting" in err and "listeners[0].port: must be an integer" in err


def test_serve_refuses_unloadable_tls_certificate(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.pem").write_text("not a certificate")
    (tmp_path / "k.pem").write_text("not a key")
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('[[listeners]]\nport = 2525\ntls_cert = "c.pem"\ntls_key = "k.pem"\n'
                   '[delivery]\nmaildir = "md"\n')
    assert main(["serve", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "listeners[0].tls_cert: cannot load" in err and "Traceback" not in err


def test_serve_refuses_an_outbound_ca_file_that_is_not_pem(tmp_path: Path) -> None:
    """A [tls.outbound] ca_file that does not load stops `filterlang serve` at start, naming
    the key: otherwise every message of the domain would be deferred for it."""
    (tmp_path / "ca.pem").write_text("not a certificate")
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('[[listeners]]\nport = 2525\n[delivery]\nmaildir = "md"\n'
                   '[tls.outbound.domains."partner.example"]\nlevel = "verify"\nca_file = "ca.pem"\n')
    done = subprocess.run([str(Path(sys.executable).parent / "filterlang"), "serve", "-c", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert 'tls.outbound.domains."partner.example".ca_file: cannot load' in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_queue_flush_on_a_full_disk_is_one_clear_error(cfg: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(cfg)
    spool = spool_for(config)
    transport = MemoryTransport(answers={"b@example.org": Result(451, "4.4.1 down")})
    qid = spool.store(Envelope("a@example.com", ("b@example.org",)), MSG)
    run_queue(QueueRunner(spool, config.delivery, transport))

    def full(*_a: object, **_k: object) -> None:
        raise SpoolError("cannot write deferred/x: No space left on device")

    monkeypatch.setattr(Spool, "rewrite", full)
    assert main(["queue", "-c", str(cfg), "flush"]) == 1
    err = capsys.readouterr().err
    assert f"cannot make deferred/{qid} due now" in err and err.count("\n") == 1
    assert spool.list("deferred") == [qid]
