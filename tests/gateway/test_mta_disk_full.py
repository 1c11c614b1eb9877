"""Disk full (issue 13 item 12): below the free-space reserve the listener answers 452 4.3.1
at MAIL, before any data; a message whose deferred rewrite the full disk refuses waits on the
retry schedule, with one alert, instead of being retried every second with an alert each
time; and it is delivered once there is room again."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .served import Served, Sink, dialogue, relay_config, send, wait_until

GATEWAY = relay_config(data="{data}", storage="min_free_space = {reserve}",
                       sections='[alerts]\nlog = "{root}/alerts.jsonl"',
                       delivery="retry_schedule = [4]")


def test_mail_is_refused_with_452_below_the_reserve(tmp_path: Path) -> None:
    with Sink() as sink:
        gw = Served(tmp_path, GATEWAY, sink, data="data", reserve=10**18)
        with gw:
            replies = dialogue(gw.port, [b"EHLO c.example", b"MAIL FROM:<a@example.com>",
                                         b"MAIL FROM:<a@example.com> SIZE=1000"])
            assert replies[2].startswith("452 4.3.1") and replies[3].startswith("452 4.3.1")
            # Room again (here: a smaller reserve, by reload): mail is taken and delivered.
            gw.config.write_text(gw.config.read_text().replace(str(10**18), "0"))
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGHUP)
            wait_until("the reloaded reserve", lambda: dialogue(gw.port, [b"EHLO c.example", b"MAIL FROM:<a@x.example>"]
                                        )[2].startswith("250"))
            assert send(gw.port, "a@example.com", ["b@example.org"],
                        b"Subject: s\r\n\r\nx\r\n")[-1][:3] == "250"
            wait_until("delivery", lambda: sink.to("b@example.org"))


@contextlib.contextmanager
def small_filesystem(where: Path, size: str = "8m") -> Iterator[Path]:
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(fs: Path) -> Path:
    """Take every free block of `fs`; the file to remove to give them back."""
    filler = fs / "filler"
    with filler.open("wb") as fh:
        chunk = b"\0" * (64 * 1024)
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_a_full_disk_at_the_deferred_rewrite_follows_the_retry_schedule(tmp_path: Path) -> None:
    attempts: list[float] = []
    answer = ["451 4.2.1 mailbox busy"]

    def reply(rcpt: str) -> str:
        attempts.append(time.monotonic())
        return answer[0]

    with small_filesystem(tmp_path / "fs") as fs, Sink(reply) as sink:
        gw = Served(tmp_path, GATEWAY, sink, data=f"{fs}/data", reserve=0)
        with gw:
            body = b"Subject: big\r\n\r\n" + (b"0123456789abcdef" * 4 + b"\r\n") * 2000  # 130 KB
            assert send(gw.port, "a@example.com", ["b@example.org"], body)[-1][:3] == "250"
            deferred = fs / "data" / "spool" / "deferred"
            wait_until("the first deferral", lambda: attempts and list(deferred.iterdir()))
            filler = _fill(fs)
            filled_at = time.monotonic()
            wait_until("three attempts on the full disk", lambda: len([t for t in attempts if t > filled_at]) >= 3)
            after = [t for t in attempts if t > filled_at]
            gaps = [b - a for a, b in zip(after, after[1:], strict=False)]
            # retry_schedule = [4]: never the one-second spin of before.
            assert min(gaps) >= 3.0, gaps
            assert [p.name for p in deferred.iterdir()], "the message waits in deferred"
            alerts = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
            assert [a["kind"] for a in alerts].count("spool_write") == 1, alerts
            filler.unlink()
            answer[0] = "250 2.1.5 OK"
            [got] = wait_until("delivery after the disk", lambda: sink.to("b@example.org"))
    assert body in got.data
