"""A seeded corpus for the differential test: gateway configurations (filters, mail policies
with content filters, sending profiles, keys in the store) and the messages sent through them.

Every case's message carries `X-Case-Id`, so whatever reaches the sink (the message, a copy, a
DSN quoting its headers, each decrypted first) is matched back to the case that caused it.
"""

from __future__ import annotations

import random

import attrs
from attrs import frozen

LOCAL = ("dave@example.org", "erin@example.org")
KEYED = ("alice@partner.example", "bob@partner.example")  # have a key in the store
UNKEYED = ("carol@other.example",)
ADDRESSES = (*LOCAL, *KEYED, *UNKEYED)

SUBJECTS = ("hello", "urgent", "drop me", "bounce me", "hold", "secret", "tag this", "cf",
            "alt route", "several", "report")

# Message filters: (name, body). `{sink}` is the sink's port (alt-mailhost goes there too).
MESSAGE_FILTERS: tuple[tuple[str, str], ...] = (
    ("mark_urgent", "if subject == '^urgent' { insert-header('X-Urgent', 'yes'); }"),
    ("strip_exe", "if attachment-filename == '(?i)\\\\.exe$' { drop-attachments-by-name('(?i)\\\\.exe$'); "
                  "insert-header('X-Stripped', 'exe'); }"),
    ("drop_it", "if subject == '^drop me' { drop(); }"),
    ("bounce_it", "if subject == '^bounce me' { bounce(); }"),
    ("hold_it", "if subject == '^hold' { quarantine('Q'); }"),
    ("partner_enc", "if rcpt-to == '@partner\\\\.example$' { smime-gateway-deferred('enc'); }"),
    ("sign_all", "if mail-from == '@example\\\\.org$' { smime-gateway-deferred('sign'); }"),
    ("secret_now", "if subject == '^secret' { smime-gateway('enc'); }"),
    ("audit_copy", "if body-contains('confidential') { bcc('audit@example.org'); }"),
    ("retag", "if subject == '^tag' { strip-header('X-Remove'); "
              "edit-header-text('Subject', 'tag', 'TAG'); }"),
    ("big_mark", "if body-size > 2000 { insert-header('X-Big', 'yes'); }"),
    ("collect", "if subject == '^several' and rcpt-count > 1 { alt-rcpt-to('collector@example.org'); }"),
    ("reroute", "if subject == '^alt route' { alt-mailhost('127.0.0.1:{sink}'); }"),
    ("vip_sign", "if rcpt-to == '^alice@' { insert-header('X-VIP', 'alice'); }"),
)

# Content filters for a policy: (name, body); `{dir}` is the table's direction.
CONTENT_FILTERS: tuple[tuple[str, str], ...] = (
    ("cf_mark", "if subject == '^cf' { insert-header('X-CF', '{policy}'); }"),
    ("cf_sign", "if true { smime-gateway-deferred('sign'); }"),
    ("cf_enc", "if subject == '^report' { smime-gateway-deferred('enc'); }"),
    ("cf_hold", "if body-contains('quarantine-this') { quarantine('Q'); }"),
    ("cf_drop", "if subject == '^cf' and body-contains('drop-in-cf') { drop(); }"),
    ("cf_footer_tag", "if true { insert-header('X-Policy', '{policy}'); }"),
)


@frozen
class Case:
    n: int
    mail_from: str
    rcpts: tuple[str, ...]
    data: bytes
    # Inbound S/MIME the partner applies before sending: "" (none), "encrypt" (to the
    # organisation's certificate) or "sign" (by the partner's key); the harness does it.
    smime: str = ""
    # What the gateway's Rspamd answers for this case's sender, where the gateway scans:
    # "ham", "suspect" or "spam" (the harness's stand-in Rspamd answers by envelope sender).
    spam: str = ""


@frozen
class GatewaySpec:
    index: int
    direction: str  # what 127.0.0.1 gets: "outgoing" (RELAY) or "incoming" (ACCEPT)
    message_filters: str  # filter file text (with {sink} left to fill)
    policies: tuple[tuple[str, tuple[str, ...], str], ...]  # (name, recipients, content filters)
    sign_mode: str
    enc_mode: str
    missing: str
    cipher: str
    cases: tuple[Case, ...]
    examples: bool = False  # the example filters (examples/filters) instead of generated ones
    # Anti-spam, per mail policy: (policy name, spam_action, spam_subject_tag); empty: the
    # gateway has no [antispam].
    spam_policies: tuple[tuple[str, str, str], ...] = ()


def _message(rng: random.Random, n: int, mail_from: str, rcpts: tuple[str, ...]) -> bytes:
    subject = rng.choice(SUBJECTS)
    lines = [f"From: <{mail_from}>", f"To: {', '.join(f'<{r}>' for r in rcpts)}",
             f"Subject: {subject} {n}", f"Message-ID: <case{n}@diff.example>",
             "Date: Mon, 07 Dec 2026 00:00:00 +0000", f"X-Case-Id: {n}"]
    if rng.random() < 0.3:
        lines.append("X-Remove: internal")
    words = ["Hello,", "the numbers are attached."]
    if rng.random() < 0.25:
        words.append("This is confidential.")
    if rng.random() < 0.15:
        words.append("quarantine-this")
    if rng.random() < 0.15:
        words.append("drop-in-cf")
    if rng.random() < 0.1:
        words.append("Company Confidential. company confidential.")
    if rng.random() < 0.1:
        words.append("4111 1111 1111 1111, 4111-1111-1111-1111 and 4111111111111111.")
    text = " ".join(words) + "\r\n" + ("Lorem ipsum dolor sit amet.\r\n" * rng.choice((1, 1, 90)))
    if rng.random() < 0.35:
        name = rng.choice(("setup.exe", "notes.txt"))
        payload = "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
        lines += ["MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="b1"']
        body = (f"--b1\r\nContent-Type: text/plain\r\n\r\n{text}"
                f"--b1\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\n"
                f"Content-Disposition: attachment; filename=\"{name}\"\r\n"
                f"Content-Transfer-Encoding: base64\r\n\r\n{payload}--b1--\r\n")
    else:
        lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=us-ascii"]
        body = text
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("ascii")


def generate(seed: int, configs: int, cases_each: int, examples: int = 0) -> list[GatewaySpec]:
    """`configs` generated gateways, then `examples` gateways running the example filters."""
    rng = random.Random(seed)
    specs: list[GatewaySpec] = []
    n = 0
    for index in range(configs + examples):
        chosen = rng.sample(MESSAGE_FILTERS, rng.randint(3, 7))
        # The names the corpus always tests come first in a stable order, the rest shuffled.
        mf = "\n".join(f"{name}:\n  {body}\n" for name, body in chosen)
        policies: list[tuple[str, tuple[str, ...], str]] = []
        direction = rng.choice(("outgoing", "outgoing", "incoming"))
        if rng.random() < 0.7:
            for pname, members in (("vip", ("alice@", "dave@")), ("Default", ())):
                if rng.random() < 0.8:
                    picked = rng.sample(CONTENT_FILTERS, rng.randint(1, 3))
                    text = "\n".join(
                        f"content-filter {cname}_{pname.lower()}:\n  direction {direction}\n  "
                        + body.replace("{policy}", pname) + "\n" for cname, body in picked)
                else:
                    text = ""
                policies.append((pname, members, text))
        cases: list[Case] = []
        for _ in range(cases_each):
            n += 1
            pool = ADDRESSES if direction == "outgoing" else LOCAL
            rcpts = tuple(rng.sample(pool, rng.randint(1, min(3, len(pool)))))
            if direction == "incoming" and rng.random() < 0.2:
                rcpts += (rng.choice(KEYED),)  # refused: relaying denied under ACCEPT
            sender = f"s{n}@example.org" if direction == "outgoing" else f"s{n}@partner.example"
            smime = ""
            if direction == "incoming":
                smime = rng.choice(("", "", "encrypt", "sign", "sign"))
            cases.append(Case(n, sender, rcpts, _message(rng, n, sender, rcpts), smime))
        spec = GatewaySpec(
            index, direction, mf, tuple(policies), rng.choice(("detached", "opaque")),
            rng.choice(("encrypt", "sign-encrypt", "triple")),
            rng.choice(("bounce", "drop", "split")),
            rng.choice(("aes128-cbc", "aes256-cbc", "aes256-gcm")), tuple(cases),
            examples=index >= configs)
        specs.append(spec if spec.examples else _with_scanning(seed, spec))
    return specs


def _with_scanning(seed: int, spec: GatewaySpec) -> GatewaySpec:
    """Half the generated gateways scan for spam: each policy's spam_action (and a Subject
    tag for delivered spam), and what Rspamd answers for each case. Drawn from a generator of
    their own, so the rest of the corpus is the same with or without them."""
    rng = random.Random(f"{seed}-spam-{spec.index}")
    if rng.random() < 0.5:
        return spec
    names = [name for name, _, _ in spec.policies] or ["Default"]
    spam_policies = []
    for name in names:
        action = rng.choice(("deliver", "deliver", "drop", "quarantine"))
        tag = rng.choice(("", "[SPAM]")) if action == "deliver" else ""
        spam_policies.append((name, action, tag))
    cases = tuple(attrs.evolve(c, spam=rng.choice(("ham", "suspect", "spam", "spam")))
                  for c in spec.cases)
    return attrs.evolve(spec, cases=cases, spam_policies=tuple(spam_policies))
