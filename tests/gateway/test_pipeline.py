"""Pipeline slots in reference-11 order, and what stages can ask of delivery."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from runtime.config.config import Delivery
from runtime.mta.queue import QueueRunner
from runtime.mta.spool import Envelope, Spool
from runtime.mta.tracking import Tracker
from runtime.mta.transport import Destination, MemoryTransport
from runtime.pipeline.flow import (
    BOUNCE,
    COPIED,
    DROP,
    STAGE_NAMES,
    Copy,
    InFlight,
    build_pipeline,
)

from .queue_support import run_queue

MSG = b"Message-ID: <m1@example.com>\r\nSubject: s\r\n\r\nbody\r\n"
RCPTS = ("k1@example.org", "k2@example.org", "n1@example.org", "n2@example.org")


def test_stage_order_is_reference_11() -> None:
    assert STAGE_NAMES == ("mail_flow_policy", "smime_inbound", "message_filters", "mail_policies",
                           "anti_spam", "anti_virus", "content_filters", "smime_outbound",
                           "delivery")
    with pytest.raises(ValueError, match="unknown pipeline stage"):
        build_pipeline({"antivirus": object()})  # type: ignore[dict-item]


class Recorder:
    def __init__(self, name: str, log: list[str], action: str = "") -> None:
        self.name, self.log, self.action = name, log, action

    def process(self, msg: InFlight) -> None:
        self.log.append(self.name)
        if self.action == "final":
            msg.final = True
        elif self.action == "split":  # a sending profile with missing_key_action = split
            msg.copies.append(Copy(RCPTS[:2], b"Subject: s\r\n\r\nENCRYPTED\r\n", note="encrypted"))
            msg.copies.append(Copy(RCPTS[2:], b"Subject: s\r\n\r\nSIGNED\r\n", note="signed only"))
            for r in RCPTS:
                msg.dispositions[r] = COPIED
        elif self.action == "drop":
            for r in msg.dispositions:
                msg.dispositions[r] = DROP
        elif self.action == "bounce":
            for r in msg.dispositions:
                msg.dispositions[r] = BOUNCE
            msg.headers_only_dsn = True
        elif self.action == "alt":
            msg.alt_mailhost = "10.9.9.9:2526"


def run(tmp_path: Path, stages: dict[str, Recorder]) -> tuple[MemoryTransport, QueueRunner]:
    t = MemoryTransport()
    r = QueueRunner(Spool(tmp_path), Delivery(relay="127.0.0.1:25"), t,
                    stages=build_pipeline(stages), tracker=Tracker(tmp_path / "t.jsonl"))
    r.spool.store(Envelope("a@example.com", RCPTS), MSG)
    run_queue(r)
    return t, r


def test_stages_run_in_order_and_final_skips_the_rest(tmp_path: Path) -> None:
    log: list[str] = []
    names = [n for n in STAGE_NAMES if n != "delivery"]
    stages = {n: Recorder(n, log, "final" if n == "message_filters" else "") for n in names}
    t, _ = run(tmp_path, stages)
    assert log == ["mail_flow_policy", "smime_inbound", "message_filters"]
    assert len(t.sent) == 1


def test_split_copies_reach_exactly_their_recipients(tmp_path: Path) -> None:
    t, r = run(tmp_path, {"smime_outbound": Recorder("smime_outbound", [], "split")})
    got = sorted((s[2], s[3].split(b"\r\n\r\n")[1]) for s in t.sent)
    assert got == [(RCPTS[:2], b"ENCRYPTED\r\n"), (RCPTS[2:], b"SIGNED\r\n")]
    assert r.spool.counts() == dict.fromkeys(r.spool.counts(), 0)
    assert '"trace":["encrypted"]' in (tmp_path / "t.jsonl").read_text()


def test_drop_delivers_nothing_and_sends_no_dsn(tmp_path: Path) -> None:
    t, _ = run(tmp_path, {"message_filters": Recorder("message_filters", [], "drop")})
    assert t.sent == []
    assert (tmp_path / "t.jsonl").read_text().count('"event":"drop"') == 4


def test_bounce_sends_one_headers_only_dsn(tmp_path: Path) -> None:
    t, _ = run(tmp_path, {"smime_outbound": Recorder("smime_outbound", [], "bounce")})
    [(dest, sender, rcpts, dsn)] = t.sent
    assert sender == "" and rcpts == ("a@example.com",)
    parsed = email.message_from_bytes(dsn, policy=email.policy.default)
    parts = [p.get_content_type() for p in parsed.iter_parts()]  # type: ignore[attr-defined]
    assert parts == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert b"body" not in dsn.split(b"text/rfc822-headers")[1]
    assert dsn.count(b"Action: failed") == 4


def test_alt_mailhost_is_honoured(tmp_path: Path) -> None:
    t, _ = run(tmp_path, {"content_filters": Recorder("content_filters", [], "alt")})
    assert [s[0] for s in t.sent] == [Destination("10.9.9.9", 2526)]
    assert '"message_id":"<m1@example.com>"' in (tmp_path / "t.jsonl").read_text()


class Broken:
    name = "content_filters"

    def process(self, msg: InFlight) -> None:
        if b"poison" in msg.data:
            raise RuntimeError("stage bug")


def test_stage_error_parks_message_in_hold_and_queue_goes_on(tmp_path: Path) -> None:
    t = MemoryTransport()
    r = QueueRunner(Spool(tmp_path), Delivery(relay="127.0.0.1:25"), t,
                    stages=build_pipeline({"content_filters": Broken()}))
    bad = r.spool.store(Envelope("a@example.com", ("b@example.org",)), b"Subject: poison\r\n\r\nx\r\n")
    r.spool.store(Envelope("a@example.com", ("b@example.org",)), MSG)
    assert run_queue(r) == 2
    assert r.spool.list("hold") == [bad]
    assert [s[3] for s in t.sent] == [MSG]


def test_stage_events_become_metrics(tmp_path: Path) -> None:
    from runtime.mta.metrics import Metrics

    class Hit:
        name = "message_filters"

        def process(self, msg: InFlight) -> None:
            msg.events += [("filter_hit", "tag_external"), ("smime", "verified")]

    metrics = Metrics()
    r = QueueRunner(Spool(tmp_path), Delivery(relay="127.0.0.1:25"), MemoryTransport(),
                    stages=build_pipeline({"message_filters": Hit()}), metrics=metrics)
    r.spool.store(Envelope("a@example.com", ("b@example.org",)), MSG)
    run_queue(r)
    get = metrics.registry.get_sample_value
    assert get("filterlang_filter_hits_total", {"filter": "tag_external"}) == 1.0
    assert get("filterlang_smime_outcomes_total", {"outcome": "verified"}) == 1.0
    assert get("filterlang_recipients_delivered_total", {"outcome": "delivered"}) == 1.0
