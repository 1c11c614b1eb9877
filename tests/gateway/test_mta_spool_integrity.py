"""Spool integrity (issue 13 item 13): a queue file carries its message's length and CRC-32;
a truncated or damaged one goes to `corrupt` with an alert and is never delivered, and the
version-1 files of an older gateway are still read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.mta.spool import CorruptEntry, Spool, decode, encode
from runtime.pipeline.envelope import Envelope

from .served import Served, Sink, relay_config, wait_until

ENV = Envelope("a@example.com", ("b@example.org",), queue_id="q1", received_at=1.0)
DATA = b"Subject: intact\r\n\r\n" + b"line of text\r\n" * 200


def _v1(env: Envelope, data: bytes) -> bytes:
    """A queue file as version 1 wrote it: no length, no checksum."""
    fields = env.to_json() | {"version": 1}
    return b"FLSPOOL 1\n" + json.dumps(fields).encode() + b"\n" + data


@pytest.mark.parametrize("damage", ["truncate", "extend", "flip"])
def test_damaged_bodies_are_refused(damage: str) -> None:
    blob = bytearray(encode(ENV, DATA))
    if damage == "truncate":
        del blob[-100:]
    elif damage == "extend":
        blob += b"\r\nBcc: x@example.net\r\n"
    else:
        blob[-50] ^= 0x20
    with pytest.raises(CorruptEntry):
        decode(bytes(blob))
    assert decode(encode(ENV, DATA)) == (ENV, DATA)


def test_version_1_files_are_still_read(tmp_path: Path) -> None:
    env, data = decode(_v1(ENV, DATA))
    assert data == DATA and env.rcpt_tos == ENV.rcpt_tos
    spool = Spool(tmp_path)
    big = DATA * 200  # above the size read in one piece: the other path
    (tmp_path / "incoming" / "q1").write_bytes(_v1(ENV, big))
    assert spool.read("incoming", "q1")[1] == big
    qid = spool.store(ENV, big)
    raw = (tmp_path / "incoming" / qid).read_bytes()
    (tmp_path / "incoming" / qid).write_bytes(raw[:-1])
    with pytest.raises(CorruptEntry):
        spool.read("incoming", qid)


GATEWAY = relay_config(sections='[alerts]\nlog = "alerts.jsonl"')


def test_serve_moves_damaged_files_to_corrupt_and_delivers_the_rest(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "data" / "spool")
    names = {}
    for label in ("truncated", "flipped", "intact", "old"):
        data = DATA.replace(b"intact", label.encode())
        env = Envelope("a@example.com", (f"{label}@example.org",))
        names[label] = spool.store(env, data)
    incoming = tmp_path / "data" / "spool" / "incoming"
    truncated = incoming / names["truncated"]
    truncated.write_bytes(truncated.read_bytes()[:-700])  # a write cut short
    flipped = incoming / names["flipped"]
    blob = bytearray(flipped.read_bytes())
    blob[-300] ^= 0x01  # one bit of the body changed on disk
    flipped.write_bytes(bytes(blob))
    old = incoming / names["old"]
    env, data = decode(old.read_bytes())
    old.write_bytes(_v1(env, data))
    with Sink() as sink, Served(tmp_path, GATEWAY, sink):
        wait_until("the intact and the version-1 message", lambda: sink.to("intact@example.org") and sink.to("old@example.org"))
        corrupt = tmp_path / "data" / "spool" / "corrupt"
        wait_until("two files in corrupt", lambda: len(list(corrupt.iterdir())) == 2)
    assert sorted(p.name for p in corrupt.iterdir()) == sorted(
        [names["truncated"], names["flipped"]])
    assert sink.to("truncated@example.org") == [] and sink.to("flipped@example.org") == []
    alerts = (tmp_path / "alerts.jsonl").read_text()
    assert alerts.count('"kind":"corrupt_queue_file"') == 2
    assert "truncated" in alerts and "CRC-32" in alerts
