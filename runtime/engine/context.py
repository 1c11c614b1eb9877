"""The message context one filter run sees: envelope, connection, S/MIME state, the message.

The message is parsed lazily: the header block first (cheap, enough for header and envelope
rules), the whole MIME tree only when a body or attachment rule or an edit needs it. Parse
defects are recorded on the context and never raised.
"""

from __future__ import annotations

import email.policy
from email.charset import QP, Charset
from email.errors import CharsetError, HeaderParseError
from email.feedparser import BytesFeedParser
from email.header import Header, decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from typing import Any

from attrs import define, field, frozen

from runtime.engine.headerblock import parse_plain

FAST = email.policy.compat32

# Header edits made before the full parse are replayed on the full tree when it is built, so
# the order "edit headers, then scan the body" sees one consistent message.
_HeaderOp = tuple[str, str, str]  # ("insert"|"strip"|"replace", name, value)


@frozen
class Recipient:
    """One RCPT TO with its DSN parameters (NOTIFY, ORCPT) kept for the delivery stage."""

    address: str
    params: tuple[tuple[str, str], ...] = ()


@frozen
class Envelope:
    mail_from: str
    recipients: tuple[Recipient, ...]
    mail_params: tuple[tuple[str, str], ...] = ()  # RET, ENVID, SIZE, BODY ...

    @classmethod
    def simple(cls, mail_from: str, rcpts: list[str] | tuple[str, ...]) -> Envelope:
        """An envelope from addresses as a user types them (``filterlang test``, suites)."""
        return cls(smtp_address(mail_from), tuple(Recipient(r) for r in rcpts))

    @property
    def rcpt_addresses(self) -> tuple[str, ...]:
        return tuple(r.address for r in self.recipients)


def smtp_address(text: str) -> str:
    """An address as SMTP writes it, without its brackets: ``<>`` is the null sender ``''``."""
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        return text[1:-1].strip()
    return text


@frozen
class Connection:
    """Facts of the SMTP session; names are the configured nicknames (reference 6.3)."""

    remote_ip: str = "127.0.0.1"
    remote_host: str = ""
    listener: str = ""
    interface: str = ""
    sender_group: str = ""
    flow_policy: str = ""
    auth_user: str = ""
    direction: str = "incoming"
    tls_client_subject: str = ""  # a verified client certificate's subject (RFC 4514)
    gateway_hostname: str = ""  # gateway.toml's hostname ($Hostname); "": this system's name


@frozen
class SmimeState:
    """What the inbound S/MIME stage publishes (reference 12.7)."""

    processed: bool = False
    verified: bool = False
    signers: tuple[str, ...] = ()
    issuers: tuple[str, ...] = ()
    # Decrypted CBC/3DES content that no verified signature covers (EFAIL, smime.md 9.1).
    unauthenticated: bool = False

    @classmethod
    def parse(cls, text: str) -> SmimeState:
        """``none`` | ``failed`` | ``verified`` | ``unauthenticated`` [``:signer@x,...``] — the
        ``--smime-state`` form."""
        state, _, signers = text.partition(":")
        names = tuple(s.strip() for s in signers.split(",") if s.strip())
        if state == "verified":
            return cls(True, True, names)
        if state == "failed":
            return cls(True, False, names)
        if state == "unauthenticated":
            return cls(True, False, names, unauthenticated=True)
        if state != "none":
            raise ValueError(f"S/MIME state {text!r}: expected none, failed, verified or "
                             "unauthenticated[:signers]")
        return cls()


_FEED_CHUNK = 64 * 1024


def _parse_incrementally(source: bytes) -> Message:
    """Parse by feeding chunks: ``parsebytes`` decodes the whole message to one str and copies
    it again before splitting (peak about 6x the message); feeding keeps the peak near 1x plus
    the parsed tree (issue 3: memory within 4x the message size)."""
    feeder = BytesFeedParser(policy=FAST, _factory=EmailMessage)
    view = memoryview(source)
    for start in range(0, len(source), _FEED_CHUNK):
        feeder.feed(bytes(view[start:start + _FEED_CHUNK]))
    return feeder.close()


@define
class MessageContext:
    """Everything a rule or an action may look at or change for one message."""

    raw: bytes
    envelope: Envelope
    connection: Connection = Connection()
    smime: SmimeState = SmimeState()
    # The message's id for $MID and log-entry lines: the gateway's queue id (what tracking,
    # `filterlang queue` and the logs name it by); 1 offline, where there is no queue.
    mid: int | str = 1
    services: Any = None  # runtime.engine.services.Services; None means "no provider configured"
    resources: Any = None  # runtime.engine.resources.Resources: dictionaries, texts, archive dir
    defects: list[str] = field(factory=list)
    current_filter: str = ""
    matched_content: list[str] = field(factory=list)
    dropped: list[tuple[str, str]] = field(factory=list)  # (filename, filetype)
    _headers: Message | None = None
    _full: EmailMessage | None = None
    _header_ops: list[_HeaderOp] = field(factory=list)
    _modified: bool = False
    _body_modified: bool = False
    _all_header_ops: list[_HeaderOp] = field(factory=list)  # every edit, for header-only output
    _parts_cache: Any = None
    scan_sets: dict[tuple[bool, bool], Any] = field(factory=dict)  # content-scan part lists
    _hlist: list[tuple[str, str]] | None = None
    _hcache: dict[str, list[str]] = field(factory=dict)
    # Raw values by lower-cased name, for the header list `_hindex_of`: 50 filters asking for
    # a dozen names each rescanned (and lower-cased) the whole header once per name.
    _hindex: dict[str, list[str]] = field(factory=dict)
    _hindex_of: list[tuple[str, str]] | None = None
    _hlist_full: list[tuple[str, str]] | None = None
    _head_end: int = -1  # where the top-level header block ends in raw (computed once)
    elided: Any = None  # runtime.engine.elide.Elided for large messages, set by the full parse
    _subject0: str | None = None  # the Subject before it was last stripped (see subject())

    # --- parsing ----------------------------------------------------------------------------

    def _header_block(self) -> bytes:
        if self._head_end < 0:
            crlf = self.raw.find(b"\r\n\r\n")
            # search for a bare blank line only before the CRLF one: not through the whole body
            lf = self.raw.find(b"\n\n", 0, crlf + 2 if crlf >= 0 else len(self.raw))
            # The block keeps its last line's line end: CRLF is two bytes, a bare LF one.
            ends = [i + n for i, n in ((crlf, 2), (lf, 1)) if i >= 0]
            self._head_end = min(ends) if ends else len(self.raw)
        return self.raw[: self._head_end]

    def _header_list(self) -> list[tuple[str, str]]:
        """(name, raw value) pairs of the top-level header, unfolded, edits applied.

        Read straight from the bytes: header rules never wait for a MIME parse (lazy parsing).
        Once the full tree exists it is the truth (body edits may rewrite Content-* fields).
        """
        if self._full is not None:
            if self._hlist_full is None:  # rebuilt after every edit, not on every rule
                self._hlist_full = [(k, str(v)) for k, v in self._full.items()]
            return self._hlist_full
        if self._hlist is None:
            # Each field's pieces are gathered and joined once: appending every continuation
            # line to the value so far copied it again each time (quadratic: a 1.2 MB folded
            # header took 13.8 s).
            fields: list[tuple[str, list[str]]] = []
            text = self._header_block().decode("utf-8", "replace")
            for line in text.replace("\r\n", "\n").split("\n"):
                if line[:1] in (" ", "\t") and fields:
                    fields[-1][1].append(line.strip())
                elif ":" in line:
                    name, _, value = line.partition(":")
                    if name and not name.startswith("From "):
                        fields.append((name.strip(), [value.strip()]))
            pairs = [(name, " ".join(pieces)) for name, pieces in fields]
            self._hlist = pairs
            for op in self._header_ops:
                _apply_list_op(self._hlist, op)
        return self._hlist

    @property
    def headers(self) -> Message:
        """A Message view of the top-level header (full tree once built)."""
        if self._full is not None:
            return self._full
        if self._headers is None:
            try:
                self._headers = BytesHeaderParser(policy=FAST).parsebytes(self._header_block())
            except Exception as exc:  # the parser is lenient; this is a last resort
                self.defects.append(f"header parse failed: {exc}")
                self._headers = EmailMessage()
            for op in self._header_ops:
                _apply_header_op(self._headers, op)
        return self._headers

    @property
    def message(self) -> EmailMessage:
        """The full MIME tree, built on first use, with earlier header edits replayed.

        compat32 keeps header values as plain strings: about twice as fast as
        ``email.policy.default``; decoding is done by the runtime where a rule needs it.
        """
        if self._full is None:
            from runtime.engine.elide import elide

            source, self.elided = elide(self.raw)
            try:
                msg = self._single_part() or _parse_incrementally(source)
            except RecursionError:
                self.defects.append("MIME nesting too deep; message read as one part")
                msg = BytesParser(policy=FAST, _class=EmailMessage).parsebytes(source, headersonly=True)
            except Exception as exc:
                # Read as one part, as for the nesting above, so the body rules still see the
                # bytes: an empty message here hid the whole body from every content rule (a
                # multipart whose boundary mixes RFC 2231 "boundary*" and "boundary*1" made the
                # email package raise TypeError).
                self.defects.append(f"MIME parse failed ({exc}); message read as one part")
                try:
                    msg = BytesParser(policy=FAST, _class=EmailMessage).parsebytes(
                        source, headersonly=True)
                except Exception:  # noqa: BLE001 - the last resort
                    msg = EmailMessage()
            assert isinstance(msg, EmailMessage)
            for op in self._header_ops:
                _apply_header_op(msg, op)
            self._full = msg
            self._headers = None
        return self._full

    def _single_part(self) -> EmailMessage | None:
        """A message that is not multipart needs no line-by-line parse: header + raw body."""
        if self.elided is not None:
            return None
        ctype = " ".join(v for n, v in self._header_list() if n.lower() == "content-type").lower()
        if "multipart/" in ctype or "message/" in ctype:
            return None
        head = self._header_block()
        msg = parse_plain(head) or BytesHeaderParser(policy=FAST, _class=EmailMessage).parsebytes(head)
        if msg.defects:
            return None  # let the full parser record what is wrong
        rest = self.raw[len(head):]
        # the blank line that ends the header belongs to neither part
        rest = rest[2:] if rest.startswith(b"\r\n") else rest[1:] if rest.startswith(b"\n") else rest
        msg.set_payload(rest.decode("ascii", "surrogateescape"))
        assert isinstance(msg, EmailMessage)
        return msg

    @property
    def full_parsed(self) -> bool:
        return self._full is not None

    def invalidate_parts(self) -> None:
        self._parts_cache = None
        self.scan_sets.clear()

    # --- header access and edits ------------------------------------------------------------

    def header_values(self, name: str) -> list[str]:
        """Decoded values (RFC 2047) of every instance of ``name``, case-insensitive."""
        key = name.lower()
        cached = self._hcache.get(key)
        if cached is not None:
            return cached
        hlist = self._header_list()
        if self._hindex_of is not hlist:
            self._hindex = {}
            for n, v in hlist:
                self._hindex.setdefault(n.lower(), []).append(v)
            self._hindex_of = hlist
        raw = self._hindex.get(key)
        out = [decode_words(v, self.defects) for v in raw] if raw else []  # mostly absent
        self._hcache[key] = out
        return out

    def subject(self) -> str:
        """``$Subject``: the Subject as it stands, or while it is stripped, as it was before.

        The guide's own subject-tagging idiom is ``strip-header('Subject');
        insert-header('Subject', '[TAG] $Subject')``: read after the strip, the subject would
        be gone and the tag would replace it.
        """
        values = self.header_values("Subject")
        return values[0] if values else (self._subject0 or "")

    def edit_header(self, op: str, name: str, value: str = "") -> None:
        if op == "strip" and name.lower() == "subject":
            self._subject0 = self.subject()
        entry = (op, name, value)
        self._modified = True
        self._all_header_ops.append(entry)
        self._hcache.clear()
        self._hindex_of = None  # the list may have been edited in place
        self._hlist_full = None
        if self._hlist is not None:
            _apply_list_op(self._hlist, entry)
        if self._full is not None:
            _apply_header_op(self._full, entry)
        else:
            self._header_ops.append(entry)
            if self._headers is not None:
                _apply_header_op(self._headers, entry)

    def mark_modified(self) -> None:
        """The body (or the MIME tree) changed: output is re-serialised from the tree."""
        self._modified = True
        self._body_modified = True
        self._hcache.clear()
        self._hindex_of = None  # the list may have been edited in place
        self._hlist_full = None

    @property
    def modified(self) -> bool:
        return self._modified

    def as_bytes(self) -> bytes:
        """The message as it stands now (the original bytes if nothing changed)."""
        if not self._modified:
            return self.raw
        if not self._body_modified:
            try:
                return self._with_new_header()
            except Exception as exc:  # fall back to serialising the tree
                self.defects.append(f"header-only output failed: {exc}")
        try:
            # keep the original line endings (CRLF on the wire, LF in most .eml files)
            linesep = "\r\n" if b"\r\n" in self.raw[:4096] else "\n"
            data = self.message.as_bytes(policy=FAST.clone(linesep=linesep))
            data = data if self.elided is None else self.elided.restore(data)
            try:
                return self._keep_top_header(data, linesep)
            except Exception as exc:  # the serialised tree is still a correct message
                self.defects.append(f"header-preserving output failed: {exc}")
                return data
        except Exception as exc:
            self.defects.append(f"message could not be serialised after edits: {exc}")
            return self.raw

    def _keep_top_header(self, data: bytes, linesep: str) -> bytes:
        """A body edit re-serialises the tree, which re-folds every top-level field. Keep the
        received fields (edits applied as in `_with_new_header`) and take from the tree only
        what the body edit may have changed: MIME-Version and the Content-* fields."""
        sep = linesep.encode()
        cut = data.find(sep + sep)
        if cut < 0:
            return data
        made = raw_fields(data[: cut + len(sep)])
        content = [f for f in made if _content_field(f)]
        crlf, lf = self.raw.find(b"\r\n\r\n"), self.raw.find(b"\n\n")
        ends = [i + (2 if i == crlf else 1) for i in (crlf, lf) if i >= 0]
        fields = raw_fields(self.raw[: min(ends)] if ends else self.raw)
        if fields and not fields[-1].endswith(b"\n"):
            fields[-1] += sep
        for op in self._all_header_ops:
            _apply_raw_op(fields, op, linesep)
        out: list[bytes] = []
        for f in fields:
            if not _content_field(f):
                out.append(f)
            elif content:
                out += content  # the tree's content fields, where the first received one was
                content = []
        return b"".join((*out, *content, sep, memoryview(data)[cut + 2 * len(sep):]))

    def _with_new_header(self) -> bytes:
        """Only header fields changed: the header block as received with just the edited
        fields changed, then the body bytes as received. Every other field keeps its bytes,
        folding and place (a DKIM signature with c=simple still holds); nothing is re-encoded
        and no MIME parse is needed."""
        crlf, lf = self.raw.find(b"\r\n\r\n"), self.raw.find(b"\n\n")
        if crlf >= 0 and (lf < 0 or crlf < lf):
            body_start, head_end, linesep = crlf + 4, crlf + 2, "\r\n"
        elif lf >= 0:
            body_start, head_end = lf + 2, lf + 1
            linesep = "\r\n" if b"\r\n" in self.raw[:4096] else "\n"
        else:
            body_start = head_end = len(self.raw)
            linesep = "\r\n" if b"\r\n" in self.raw[:4096] else "\n"
        fields = raw_fields(self.raw[:head_end])
        if fields and not fields[-1].endswith(b"\n"):
            fields[-1] += linesep.encode()  # a header block that ends without a line end
        for op in self._all_header_ops:
            _apply_raw_op(fields, op, linesep)
        return b"".join((*fields, linesep.encode(), memoryview(self.raw)[body_start:]))

    @property
    def size(self) -> int:
        return len(self.as_bytes()) if self._modified else len(self.raw)


def decode_words(value: str, defects: list[str]) -> str:
    """RFC 2047 encoded words decoded; undecodable ones are kept as written and recorded."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    # CharsetError: a charset name that is not ASCII (found by fuzzing: "=?u\xe9f-8?B?...?=")
    except (HeaderParseError, CharsetError, LookupError, UnicodeError, ValueError):
        defects.append(f"undecodable encoded word in {value[:40]!r}")
        return value


# Quoted-printable ("Q") encoded words, as the guide says inserted headers are written; the
# standard library's utf-8 default picks base64 whenever that is shorter.
_Q_UTF8 = Charset("utf-8")
_Q_UTF8.header_encoding = QP


def _encode_value(value: str) -> str:
    """How a header value inserted by an action is written (RFC 2047 Q words when non-ASCII)."""
    return value if value.isascii() else Header(value, _Q_UTF8).encode()


def _apply_list_op(pairs: list[tuple[str, str]], op: _HeaderOp) -> None:
    kind, name, value = op
    key = name.lower()
    if kind in ("strip", "replace"):
        pairs[:] = [(n, v) for n, v in pairs if n.lower() != key]
    if kind == "insert":
        pairs.append((name, _encode_value(value)))
    elif kind == "replace":
        pairs.extend((name, _encode_value(v)) for v in value.split("\0"))


def raw_fields(head: bytes) -> list[bytes]:
    """The fields of a header block exactly as received, each with its continuation lines and
    line ends. Linear: one pass over the lines, each field joined once (`fields[-1] += line`
    copies the field so far for every continuation line: quadratic in one long folded field)."""
    fields: list[list[bytes]] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    return [b"".join(lines) for lines in fields]


def _raw_name(field: bytes) -> bytes:
    name, colon, _ = field.partition(b":")
    return name.strip().lower() if colon else b""


def _content_field(field: bytes) -> bool:
    name = _raw_name(field)
    return name.startswith(b"content-") or name == b"mime-version"


def _new_field(name: str, value: str, linesep: str) -> bytes:
    """One field an action writes: RFC 2047 for non-ASCII, folded at 78 columns when long."""
    text = _encode_value(value)
    if len(name) + 2 + len(text) > 78 and value.isascii():
        text = Header(value, "us-ascii", header_name=name).encode(linesep=linesep)
    return f"{name}: {text}{linesep}".encode("ascii", "surrogateescape")


def _apply_raw_op(fields: list[bytes], op: _HeaderOp, linesep: str) -> None:
    kind, name, value = op
    key = name.lower().encode("ascii", "surrogateescape")
    if kind == "insert":
        fields.append(_new_field(name, value, linesep))
        return
    if kind == "strip":
        fields[:] = [f for f in fields if _raw_name(f) != key]
        return
    # replace: the new values, one per existing instance and in its place (reference 7.6)
    new = [_new_field(name, v, linesep) for v in value.split("\0")]
    out: list[bytes] = []
    for f in fields:
        if _raw_name(f) != key:
            out.append(f)
        elif new:
            out.append(new.pop(0))
    fields[:] = out + new


def _apply_header_op(msg: Message, op: _HeaderOp) -> None:
    kind, name, value = op
    if kind == "strip":
        del msg[name]
    elif kind == "insert":
        msg[name] = _encode_value(value)  # encoded here, or serialising picks base64
    elif kind == "replace":
        # value holds the new values joined by NUL, one per existing instance, in order
        del msg[name]
        for v in value.split("\0"):
            msg[name] = _encode_value(v)
