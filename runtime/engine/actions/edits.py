"""Header and body edits (reference 7.6, 7.8), applied at once so later rules see them (4.3)."""

from __future__ import annotations

import email.policy
import fnmatch
import html
import re
from email.contentmanager import raw_data_manager
from email.message import EmailMessage, Message, MIMEPart
from typing import Any

from runtime.engine import filetypes, rx, smartid
from runtime.engine.context import MessageContext
from runtime.engine.mimewalk import Part
from runtime.engine.plan import ActionPlan
from runtime.engine.rules.common import parts
from runtime.engine.variables import clean, expand

Args = list[Any]
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")


class EditError(Exception):
    pass


def insert_header(ctx: MessageContext, plan: ActionPlan, args: Args) -> Args:
    name = str(args[0])
    if not _HEADER_NAME.match(name):
        raise EditError(f"insert-header: {name!r} is not a valid ASCII header name")
    value = expand(str(args[1]) if len(args) > 1 else "", ctx)
    ctx.edit_header("insert", name, value)
    plan.header_changes.append(f"+ {name}: {value}")
    return [name, value]


def strip_header(ctx: MessageContext, plan: ActionPlan, args: Args) -> Args:
    name = str(args[0])
    if ctx.header_values(name):
        ctx.edit_header("strip", name)
        plan.header_changes.append(f"- {name}")
    return [name]


def _sub(pattern: rx.Pattern, repl: str, text: str) -> str:
    return rx.sub(pattern, repl, text)


def edit_header_text(ctx: MessageContext, plan: ActionPlan, args: Args) -> Args:
    name, pattern, repl = str(args[0]), args[1], str(args[2])
    values = ctx.header_values(name)
    if values:  # no action when the header is absent (reference 7.6)
        new = [clean(_sub(pattern, repl, v)) for v in values]
        if new != values:
            ctx.edit_header("replace", name, "\0".join(new))
            plan.header_changes.extend(f"~ {name}: {v}" for v in new)
    return [name, rx.source(pattern), repl]


# RFC 2045 6.7: encoded lines are at most 76 characters. The parse policy (compat32) says 78,
# and the content manager encodes quoted-printable to the part's policy: add-footer wrote
# 78-character lines, which the signer then had to re-encode.
_BODY_POLICY = email.policy.compat32.clone(max_line_length=76)


def write_text(part: Message, text: str, subtype: str | None = None) -> None:
    """Replace a part's body with `text`: UTF-8 in a valid transfer encoding (7bit, 8bit,
    quoted-printable or base64, lines within RFC 2045's limits). Every action that writes a
    body goes through here."""
    assert isinstance(part, MIMEPart)
    if part.get_content_maintype() == "multipart":
        # A part that says multipart but whose boundary could not be read (found by fuzzing:
        # `bo0ndary=`) is one opaque body to the walker; replacing it makes it text, and the
        # email package refuses to write text into a part still declared multipart.
        del part["Content-Type"]
        part.set_payload("")
    saved = part.policy
    part.policy = _BODY_POLICY
    try:
        # keep every non-content header (set_content replaces only Content-*)
        part.set_content(text, subtype=subtype or part.get_content_subtype(), charset="utf-8",
                         content_manager=raw_data_manager)
    finally:
        part.policy = saved


def _set_text(part: Message, text: str) -> None:
    write_text(part, text)


def edit_body_text(ctx: MessageContext, plan: ActionPlan, args: Args) -> Args:
    pattern, repl = args[0], str(args[1])
    changed = False
    for p in parts(ctx):
        if p.is_body:
            new = _sub(pattern, repl, p.text)
            if new != p.text:
                _set_text(p.msg, new)
                changed = True
    if changed:
        ctx.mark_modified()
        ctx.invalidate_parts()
    return [rx.source(pattern), repl]


def _selector(ctx: MessageContext, action: str, args: Args) -> tuple[Any, str | None]:
    """The predicate over one attachment and the optional comment (either argument order)."""
    comment = next((a for a in args[1:] if isinstance(a, str)), None)
    threshold = next((int(a) for a in args[1:] if isinstance(a, int | float)), 1)
    key = args[0]
    from runtime.engine.rules.attachments import _type_of, member_names

    if action == "drop-attachments-by-name":
        def by_name(p: Part) -> bool:
            names = [p.filename] + (member_names(p.payload, p.filetype) if p.filetype in ("zip", "tar") else [])
            return any(n and rx.search(key, n) for n in names)
        return by_name, comment
    if action == "drop-attachments-by-type":
        return (lambda p: fnmatch.fnmatchcase(_type_of(p).lower(), str(key).lower())), comment
    if action == "drop-attachments-by-filetype":
        return (lambda p: filetypes.matches(p.filetype, str(key))), comment
    if action == "drop-attachments-by-mimetype":
        return (lambda p: p.declared_type == str(key).lower()), comment
    if action == "drop-attachments-by-size":
        return (lambda p: p.encoded_size >= int(key)), comment
    if action == "drop-attachments-where-contains":
        return (lambda p: p.scannable and smartid.count(key, p.text)[0] >= threshold), comment
    if action == "drop-attachments-where-dictionary-match":
        from runtime.engine.rules.dictionaries import dict_score

        d = ctx.resources.dictionaries.get(str(key)) if ctx.resources is not None else None
        return (lambda p: d is not None and p.scannable and dict_score(d, p.text)[0] >= threshold), comment
    raise EditError(f"{action} needs an outside service")


def _parent_map(root: Message) -> dict[int, Message]:
    out: dict[int, Message] = {}
    stack = [root]
    while stack:
        m = stack.pop()
        if not m.is_multipart():  # a leaf's payload is text, decoded with its charset
            continue
        payload = m.get_payload()
        if isinstance(payload, list):
            for c in payload:
                if not isinstance(c, Message):
                    continue
                out[id(c)] = m
                stack.append(c)
    return out


def drop_attachments(ctx: MessageContext, plan: ActionPlan, args: Args) -> Args:
    action = plan_name = plan.pending
    pick, comment = _selector(ctx, plan_name, args)
    victims = [p for p in parts(ctx) if not p.is_body and pick(p)]
    if not victims:
        return list(args)
    parents = _parent_map(ctx.message)
    for p in victims:
        ctx.dropped.append((p.filename or "(unnamed)", p.filetype))
        notice = MIMEPart()
        text = expand(comment, ctx) if comment else f"Attachment {p.filename or '(unnamed)'} removed ({action})."
        write_text(notice, text, "plain")
        if p.host is not None:  # a uuencoded block: cut it out of the body text that carries it
            new_text = p.host.text.replace(p.block, text + "\n")
            _set_text(p.host.msg, new_text)
            continue
        parent = parents.get(id(p.msg))
        if parent is None:  # the message itself is the attachment
            _set_text(ctx.message, text)
            continue
        siblings = parent.get_payload()
        assert isinstance(siblings, list)
        siblings[siblings.index(p.msg)] = notice
    ctx.mark_modified()
    ctx.invalidate_parts()
    return list(args)


def _decorate(part: Message, text: str, top: bool) -> None:
    assert isinstance(part, EmailMessage)
    body = str(part.get_content(content_manager=raw_data_manager))
    if part.get_content_subtype() == "html":
        esc = html.escape(text).replace("\n", "<br>\n")
        if top:
            body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + esc, body, count=1, flags=re.I) \
                if re.search(r"<body[^>]*>", body, re.I) else esc + body
        else:
            body = re.sub(r"(</body>)", lambda m: esc + m.group(1), body, count=1, flags=re.I) \
                if re.search(r"</body>", body, re.I) else body + esc
    else:
        body = (text + "\n" + body) if top else (body.rstrip("\n") + "\n" + text + "\n")
    _set_text(part, body)


def add_disclaimers(ctx: MessageContext, plan: ActionPlan, heading: str | None, footer: str | None) -> None:
    ctype = ctx.message.get_content_type()
    if ctype in ("multipart/signed", "multipart/encrypted", "application/pkcs7-mime"):
        return  # signed or encrypted content is left alone (reference 7.6)
    res = ctx.resources
    bodies = [p for p in parts(ctx) if p.is_body]
    if not bodies:
        return
    targets = [p for p in bodies if p.alt_group is not None] or bodies[:1]
    for name, top in ((heading, True), (footer, False)):
        if not name:
            continue
        raw = res.texts.get(name) if res is not None else None
        if raw is None:
            plan.errors.append(f"text resource {name!r} does not exist")
            continue
        text = "\n".join(expand(line, ctx) for line in raw.splitlines())
        for p in targets:
            _decorate(p.msg, text, top)
    ctx.mark_modified()
    ctx.invalidate_parts()


def apply_html_convert(ctx: MessageContext) -> None:
    root = ctx.message
    for part in list(root.walk()):
        if part.get_content_type() == "multipart/alternative":
            kids = part.get_payload()
            if isinstance(kids, list) and any(
                    isinstance(k, Message) and k.get_content_type() == "text/plain" for k in kids):
                part.set_payload([k for k in kids
                                  if isinstance(k, Message) and k.get_content_type() != "text/html"])
    for p in parts(ctx):
        if p.is_body and p.msg.get_content_type() == "text/html":
            text = html.unescape(re.sub(r"<[^>]*>", "", p.text))
            write_text(p.msg, text, "plain")
    ctx.mark_modified()
    ctx.invalidate_parts()


# One implementation serves every drop-attachments-* action; dispatch is by action name
# (runtime.engine.actions), and ``plan.pending`` tells the implementation which one runs.
drop_attachments_by_name = drop_attachments_by_type = drop_attachments_by_filetype = drop_attachments
drop_attachments_by_mimetype = drop_attachments_by_size = drop_attachments
drop_attachments_where_contains = drop_attachments_where_dictionary_match = drop_attachments
