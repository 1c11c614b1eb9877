"""Benchmark for issue 3 "Speed": filter evaluation against parsing alone.

A realistic set of 50 message filters (envelope, header, body and attachment rules) runs over a
generated corpus of mixed-size messages (2 KB-200 KB, about a third with attachments). Prints
messages per second for (a) parsing alone with the standard ``email`` package, (b) parsing plus
evaluation plus plan with the runtime, the ratio of their times, and (c) a header-only filter
set, which must beat (a) because the runtime parses lazily.

    python bench/evaluate.py [--messages 10000] [--seed 1]
"""

from __future__ import annotations

import argparse
import base64
import email.policy
import random
import time
from email.parser import BytesParser

from filterlang import compile_source
from runtime.engine.context import Connection, Envelope, MessageContext
from runtime.engine.run import run_filters

WORDS = ["invoice", "meeting", "report", "quarterly", "budget", "lunch", "project", "deadline", "review", "update", "team", "customer", "order", "shipping", "contract", "draft", "final", "plan", "schedule", "office", "travel"]

ENVELOPE_HEADER = [
    "mail-from == '^newsletter@.*\\\\.example$'", "rcpt-to == '@partner\\\\.example$'",
    "rcpt-count > 50", "remote-ip == '192.0.2.0/24'", "recv-listener == 'Outbound'",
    "sendergroup == 'BLOCKED'", "mail-from == '(?i)^postmaster@'", "rcpt-to == '^abuse@'",
    "remote-ip == '198.51.100.'", "recv-int == 'Mgmt'", "smtp-auth-id-matches('*None')",
    "mail-from == '^$'", "rcpt-to == '(?i)^ceo@'", "rcpt-count >= 20", "remote-ip == '203.0.113.5'",
    "subject == '(?i)^\\\\[spam\\\\]'", "subject == '(?i)lottery|winner|prize'",
    "header('X-Spam-Flag') == 'YES'", "header('X-Mailer') == '(?i)massmail'",
    "header('List-Unsubscribe')", "header('X-Priority') == '^1'", "addr-count('To', 'Cc') > 30",
    "subject == '^.{200,}'", "header('Reply-To') == '@freemail\\\\.example$'",
    "header('X-Original-To')", "header('Received') == 'unknown'", "subject == '(?i)urgent.*wire'",
    "header('Precedence') == '^bulk$'", "header('Content-Language') == '^ru'",
    "header('X-Campaign')",
]
BODY_ATTACH = [
    "body-contains('(?i)company confidential', 2)", "only-body-contains('(?i)password\\\\s*:')",
    "body-contains('(?i)bitcoin|wallet address')", "only-body-contains('*ssn')",
    "body-contains('(?i)unsubscribe here', 3)", "only-body-contains('(?i)wire transfer')",
    "body-contains('https?://[^ ]*\\\\.zip')", "only-body-contains('(?i)dear customer')",
    "body-contains('(?i)viagra')", "only-body-contains('(?i)account suspended')",
    "attachment-filename == '(?i)\\\\.(exe|scr|pif|com|bat)$'", "attachment-filetype == 'Executable'",
    "attachment-size > 10M", "attachment-mimetype == 'application/x-msdownload'",
    "attachment-filename == '(?i)\\\\.(js|vbs|wsf)$'", "attachment-protected",
    "attachment-type == 'video/*'", "attachment-filename == '\\\\.docm$'",
    "attachment-contains('(?i)macro')", "attachment-filetype == 'rtf'",
]


def filter_source(conditions: list[str]) -> str:
    out = []
    for i, cond in enumerate(conditions):
        if i % 7 == 0:
            action = "quarantine('Policy');"
        elif i % 3 == 0:
            action = f"insert-header('X-Rule-{i}', '$Subject');"
        else:
            action = f"tag-message('t{i}');"
        out.append(f"f{i}: if {cond} {{ {action} }}")
    return "\n".join(out) + "\n"


def _text(rng: random.Random, size: int) -> str:
    lines = []
    total = 0
    while total < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)


def make_message(rng: random.Random, i: int) -> bytes:
    size = int(2048 * (100 ** rng.random()))  # log-uniform 2 KB .. 200 KB
    head = (f"From: user{i}@example.com\nTo: rcpt{i}@example.org\nSubject: {' '.join(rng.choices(WORDS, k=5))}\n"
            f"Date: Mon, 2 Nov 2026 10:00:00 +0000\nMessage-ID: <{i}@bench.example>\n"
            + "".join(f"Received: from relay{j}.example by mx.example; Mon, 2 Nov 2026 10:00:0{j} +0000\n"
                      for j in range(3)))
    if rng.random() < 0.35:
        body = _text(rng, size // 3)
        blob = base64.encodebytes(bytes(rng.getrandbits(8) for _ in range(size // 2))).decode()
        name = rng.choice(["report.pdf", "photo.jpg", "data.zip", "notes.docx"])
        raw = (head + "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"BB\"\n\n"
               f"--BB\nContent-Type: text/plain; charset=utf-8\n\n{body}\n--BB\n"
               f"Content-Type: application/octet-stream; name=\"{name}\"\n"
               f"Content-Disposition: attachment; filename=\"{name}\"\nContent-Transfer-Encoding: base64\n\n"
               f"{blob}--BB--\n")
    else:
        raw = head + "Content-Type: text/plain; charset=utf-8\n\n" + _text(rng, size) + "\n"
    return raw.replace("\n", "\r\n").encode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    # filters load as the runtime loads them: parse -> check -> compile (errors refuse to run)
    full, diags = compile_source(filter_source(ENVELOPE_HEADER + BODY_ATTACH), "bench-full")
    assert full is not None, diags
    head_only, diags = compile_source(filter_source(ENVELOPE_HEADER + ENVELOPE_HEADER[:20]),
                                      "bench-headers")
    assert head_only is not None, diags
    rng = random.Random(args.seed)
    conn = Connection(remote_ip="10.1.2.3", listener="Inbound")
    t_parse = t_eval = t_head = 0.0
    nbytes = 0
    matched = 0
    for i in range(args.messages):
        raw = make_message(rng, i)
        nbytes += len(raw)
        env = Envelope.simple(f"user{i}@example.com", [f"rcpt{i}@example.org"])
        t0 = time.perf_counter()
        BytesParser(policy=email.policy.default).parsebytes(raw)
        t1 = time.perf_counter()
        res = run_filters(full.filters, MessageContext(raw, env, conn))
        t2 = time.perf_counter()
        run_filters(head_only.filters, MessageContext(raw, env, conn))
        t3 = time.perf_counter()
        t_parse += t1 - t0
        t_eval += t2 - t1
        t_head += t3 - t2
        matched += sum(1 for f in res.filters if f.matched)
    n = args.messages
    print(f"corpus: {n} messages, {nbytes / n / 1024:.1f} KB average, {matched} filter matches")
    print(f"(a) parse alone (email.policy.default):   {n / t_parse:9.1f} msg/s")
    print(f"(b) parse + evaluate 50 filters + plan:   {n / t_eval:9.1f} msg/s")
    print(f"    ratio b/a (time):                      {t_eval / t_parse:9.2f}  (target <= 1.30)")
    print(f"(c) header-only set of 50 filters (lazy): {n / t_head:9.1f} msg/s  "
          f"({t_head / t_parse:.2f} x the time of a full parse)")
    # issue 3: a pathological regex against a 1 MB body finishes in milliseconds (RE2)
    evil, diags = compile_source("f: if body-contains('(a+)+$b') or body-contains('(a|aa)*c')"
                                 " { no-op(); }", "bench-evil")
    assert evil is not None, diags
    body = ("a" * 1000 + "\r\n") * 1000
    raw = f"Subject: evil\r\n\r\n{body}".encode()
    t0 = time.perf_counter()
    run_filters(evil.filters, MessageContext(raw, Envelope.simple("a@b", ["c@d"]), conn))
    print(f"(d) pathological regexes vs 1 MB body:    {(time.perf_counter() - t0) * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
