"""MIME side of S/MIME signatures: canonical form, building and locating signed entities.

Works on bytes: the signed part is cut out of the message exactly as received, never
re-serialised, because any re-encoding would break the signature.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.errors
import email.message
import email.parser
import email.policy
import email.utils
import re
import secrets
import threading

import attrs

from smime.errors import MalformedError

_LINE = re.compile(rb"\r\n|\r|\n")


# The last message found CRLF already, by identity. The gateway's queue checks the same bytes
# object twice per message (strip_status_headers in the flow stage, split_message_parts when
# signing it): the second check is then one comparison instead of three counts over the
# message (4 KB: 6.4 us). Only small messages are kept, so no large one stays alive for it.
_crlf_seen: bytes | None = None
_CRLF_SEEN_LIMIT = 256 * 1024


def to_crlf(data: bytes) -> bytes:
    global _crlf_seen
    if data is _crlf_seen:
        return data
    # Mail from the gateway is CRLF already: counting in C costs far less than a substitution
    # that rebuilds (and for a 50 MB message, doubles) the whole message for nothing.
    crlf = data.count(b"\r\n")
    if data.count(b"\r") == crlf and data.count(b"\n") == crlf:
        if len(data) <= _CRLF_SEEN_LIMIT and type(data) is bytes:  # immutable: still CRLF
            _crlf_seen = data
        return data
    return _LINE.sub(b"\r\n", data)


def split_entity(data: bytes) -> tuple[bytes, bytes]:
    """Return (header block without the blank line, body) of a CRLF entity."""
    if data.startswith(b"\r\n"):
        return b"", data[2:]
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return data, b""
    return head + b"\r\n", body


def _headers(head: bytes) -> list[bytes]:
    """Unfolded-aware list of raw header fields (continuation lines kept with their field).
    Each field is joined once: appending to the bytes of a field copies it per continuation
    line, quadratic in one long folded field."""
    fields: list[list[bytes]] = []
    for line in head.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    return [b"\r\n".join(lines) for lines in fields]


def _name(field: bytes) -> bytes:
    return field.split(b":", 1)[0].strip().lower()


# On a CRLF body: a NUL or 8-bit byte, a line over 76 characters, trailing white space, or a
# line starting "From " (smime.md 2.3). Checked with bytes methods (they run in C) over
# pieces of whole lines, so a large body is never copied whole nor split into a list of lines.
_PIECE = 1 << 20


def _unsafe_lines(b: bytes) -> bool:
    """`b` starts at a line start and ends at a line end (the CRLF itself left out)."""
    # The line length first: it decides most messages that need base64 (smtp-source's have
    # 78-character lines), and then the five searches after it are not made (4 KB: 13 ->
    # 5 us). A message that needs none pays the same either way.
    return (not b.isascii() or max(map(len, b.split(b"\r\n"))) > 76
            or b"\0" in b or b" \r\n" in b or b"\t\r\n" in b
            or b.endswith((b" ", b"\t")) or b.startswith(b"From ") or b"\nFrom " in b)


def _unsafe(body: bytes | memoryview) -> bool:
    view, start = memoryview(body), 0
    while len(view) - start > _PIECE:
        piece = bytes(view[start : start + _PIECE])
        cut = piece.rfind(b"\r\n")
        if cut < 0:
            return True  # one line longer than a piece
        if _unsafe_lines(piece[:cut]):
            return True
        start += cut + 2
    return _unsafe_lines(bytes(view[start:]))


# Whole 76-character lines (the same bytes as one encodebytes() call), in pieces large enough
# for malloc to map them on their own, so they go back to the kernel once joined.
_B64_STEP = 57 * 8192
_B64_LINE = re.compile(rb".{1,76}")  # 76-character lines of base64 (which holds no line end)


def b64_lines(data: bytes | memoryview) -> bytes:
    """`base64.encodebytes(data)` with CRLF line ends: lines of 76 characters, each ended by
    CRLF. encodebytes calls the encoder once per 57-byte line and the CRLF replace copies the
    result again; one call and a join of slices give the same bytes in half the time (twice
    per signed message: the body and the signature)."""
    enc = binascii.b2a_base64(data, newline=False)
    if not enc:
        return b""
    # findall cuts the lines in C; a list comprehension of slices did it in Python (4 KB:
    # 12.5 -> 10.3 us).
    return b"\r\n".join(_B64_LINE.findall(enc)) + b"\r\n"


def _needs_base64(fields: list[bytes], body: bytes | memoryview) -> bool:
    ctype = next((f for f in fields if _name(f) == b"content-type"), b"")
    if b"multipart/" in ctype.lower():
        return False
    return _unsafe(body)


def _transfer_decoded(fields: list[bytes], body: bytes | memoryview) -> bytes | memoryview:
    """The body with the transfer encoding its fields declare undone: quoted-printable that
    breaks RFC 2045 (lines over 76) is still quoted-printable, and base64 over it would hand
    the recipient `=` escapes as text. 7bit, 8bit and binary bodies are the bytes."""
    cte = next((f for f in fields if _name(f) == b"content-transfer-encoding"), b"")
    value = cte.partition(b":")[2].strip().lower()
    if value == b"quoted-printable":
        return binascii.a2b_qp(bytes(body))
    if value == b"base64":
        try:
            return base64.b64decode(re.sub(rb"\s+", b"", bytes(body)), validate=True)
        except ValueError:
            return body  # not base64 after all: signed as it is, the recipient sees the same
    return body


def _base64_entity(fields: list[bytes], body: bytes | memoryview) -> bytes:
    body = _transfer_decoded(fields, body)
    fields = [f for f in fields if _name(f) != b"content-transfer-encoding"]
    fields.append(b"Content-Transfer-Encoding: base64")
    # Encoded piecewise and joined once, so a large body is not copied three times over.
    view = memoryview(body)
    pieces = [b"\r\n".join(fields), b"\r\n\r\n"]
    pieces += [b64_lines(view[i : i + _B64_STEP]) for i in range(0, len(view), _B64_STEP)]
    return b"".join(pieces)


def _split_view(data: bytes) -> tuple[bytes, memoryview]:
    """`split_entity`, with the body a view into `data` rather than a copy."""
    if data.startswith(b"\r\n"):
        return b"", memoryview(data)[2:]
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data, memoryview(b"")
    return data[: end + 2], memoryview(data)[end + 4 :]


def canonicalise(entity: bytes) -> bytes:
    """smime.md 2.3: CRLF line ends and a 7-bit-safe transfer encoding for leaf bodies."""
    entity = to_crlf(entity)
    head, body = _split_view(entity)
    fields = _headers(head)
    if not _needs_base64(fields, body):
        return entity
    return _base64_entity(fields, body)


def canonical_entity(fields: list[bytes], body: bytes | memoryview) -> bytes:
    """`canonicalise` of the entity made of `fields` and a CRLF `body`, without building the
    uncanonical entity first (the parts come from `split_message_parts`)."""
    if not _needs_base64(fields, body):
        return b"".join([b"\r\n".join(fields), b"\r\n\r\n", body])
    return _base64_entity(fields, body)


def split_message_parts(message: bytes) -> tuple[list[bytes], list[bytes], memoryview]:
    """(outer non-content header fields, inner content header fields, body): the body is a
    view into the CRLF message, not a copy. MIME-Version stays outside."""
    head, body = _split_view(to_crlf(message))
    outer: list[bytes] = []
    inner: list[bytes] = []
    typed = False
    for f in _headers(head):  # each field's name found once (this runs for every message)
        name = _name(f)
        if name.startswith(b"content-"):
            inner.append(f)
            typed = typed or name == b"content-type"
        elif name != b"mime-version":
            outer.append(f)
    if not typed:
        inner.insert(0, b"Content-Type: text/plain; charset=us-ascii")
    return outer, inner, body


def split_message(message: bytes) -> tuple[list[bytes], bytes]:
    """Split a message into (outer non-content header fields, inner entity with content
    headers); MIME-Version stays outside."""
    outer, inner, body = split_message_parts(message)
    return outer, b"".join([b"\r\n".join(inner), b"\r\n\r\n", body])


def _b64(der: bytes) -> bytes:
    return b64_lines(der)


def build_detached(outer: list[bytes], signed_entity: bytes, der: bytes, micalg: str, *,
                   mime_version: bool = True) -> bytes:
    """The multipart/signed message (`mime_version=False`: the entity, for nesting)."""
    boundary = b"----=_smime_" + secrets.token_hex(12).encode()
    head = b"\r\n".join([
        *outer,
        *([b"MIME-Version: 1.0"] if mime_version else []),
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg='
        + micalg.encode() + b'; boundary="' + boundary + b'"',
    ])
    return b"".join([  # one copy of the (possibly large) signed entity, not one per `+`
        head, b"\r\n\r\nThis is an S/MIME signed message\r\n\r\n--", boundary, b"\r\n",
        signed_entity, b"\r\n--", boundary, b"\r\n",
        b'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n',
        b"Content-Transfer-Encoding: base64\r\n",
        b'Content-Disposition: attachment; filename="smime.p7s"\r\n\r\n',
        _b64(der), b"\r\n--", boundary, b"--\r\n",
    ])


def build_opaque(outer: list[bytes], der: bytes, *, mime_version: bool = True) -> bytes:
    head = b"\r\n".join([
        *outer,
        *([b"MIME-Version: 1.0"] if mime_version else []),
        b'Content-Type: application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"',
        b"Content-Transfer-Encoding: base64",
        b'Content-Disposition: attachment; filename="smime.p7m"',
    ])
    return head + b"\r\n\r\n" + _b64(der)


class PartiallySigned(MalformedError):
    """A signed entity exists but is not the whole message body (smime.md 9.2)."""


_SIGNED_TYPES = (
    "multipart/signed", "application/pkcs7-mime", "application/x-pkcs7-mime",
)


@attrs.frozen
class Located:
    form: str  # "detached" | "opaque"
    der: bytes
    signed_part: bytes | None  # exact bytes of the signed entity (detached form)
    from_address: str | None
    from_count: int = 1
    sender_address: str | None = None
    from_unparseable: bool = False  # a From field is there but is not one clean mailbox
    date: dt.datetime | None = None  # the Date header, when there is one that parses


@attrs.frozen
class Mailboxes:
    """What one address header says, judged strictly: the addr-specs it names and whether
    it parsed cleanly. A header a mail client may show differently from what we read (an
    invalid address list, a group, an address without local part or domain) is unparseable,
    so nothing is ever bound to it."""

    addresses: tuple[str, ...]
    fields: int  # how many such header fields the block has
    unparseable: bool

    @property
    def single(self) -> str | None:
        return self.addresses[0] if self.fields == 1 and len(self.addresses) == 1 and \
            not self.unparseable else None


_ADDRESS_DEFECTS = (email.errors.InvalidHeaderDefect, email.errors.HeaderMissingRequiredValue)

# The email package's header parsers make a token object of about a kilobyte for every word,
# special and space, and keep the tree in the header object: a From of 1,000 characters of
# "x " took 3.2 MB and 77 ms, a Content-Type of 10 KB took 10 MB and a second, and one of a
# megabyte (which the listener's size limits let through) would take gigabytes and minutes
# of a queue process (found by the smime_mime fuzz target). A value longer than RFC 5322's
# line limit, or of more lexical pieces than any header this module reads needs, is not
# parsed: it is read as text (as compat32 reads every header), and as an address field it is
# unparseable. 128 pieces cost at most about 0.5 MB and 10 ms, whatever they are.
MAX_PARSED_FIELD = 998
MAX_PARSED_PIECES = 128
_LEXICAL_PIECE = re.compile(r'\\.|[^\s()<>\[\]:;@\\,."]+|\s+|.', re.S)


def _pieces(value: str) -> int:
    """How many tokens (at most) the email package's parsers make of `value`; past the
    length limit not counted (a findall over a megabyte is a list of a million strings)."""
    if len(value) > MAX_PARSED_FIELD:
        return MAX_PARSED_PIECES + 1
    return len(_LEXICAL_PIECE.findall(value))


class _ParsedHeaders:
    """email.policy.default's header registry, remembering the header objects it made.

    The registry parses a value anew each time a header is read (Content-Type twice in a
    row for its type and its boundary, From for the count and again for the address), and a
    partner's From, Sender and signature-part Content-Type are the same in every message:
    that parsing was a sixth of a signed inbound message's CPU. The header objects are the
    registry's own, made once per (name, value) and only read afterwards."""

    # What is kept is bounded in memory too: a header object holds its parse tree, so the
    # kept values are short ones of few pieces (a partner's From, a signature part's
    # Content-Type), at most about 0.25 MB each and 64 MB in all, whatever a sender writes.
    MAX_VALUE = 256  # longer values (rare) are parsed each time rather than kept
    MAX_KEPT_PIECES = 64
    MAX_ENTRIES = 256

    def __init__(self) -> None:
        self._registry = email.policy.default.header_factory
        self._made: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str, value: str) -> str:  # (a BaseHeader: a str subclass)
        key = (name, value)  # all the registry's answer depends on
        if len(value) <= self.MAX_VALUE:
            with self._lock:
                made = self._made.get(key)
            if made is not None:  # kept values were counted when they were made
                return made
        pieces = _pieces(value)
        if pieces > MAX_PARSED_PIECES:
            return value  # too costly to parse: its text (see MAX_PARSED_PIECES)
        made = self._parse(name, value)
        if len(value) <= self.MAX_VALUE and pieces <= self.MAX_KEPT_PIECES:
            with self._lock:
                if len(self._made) >= self.MAX_ENTRIES:
                    self._made.clear()  # a partner's values come back within moments
                self._made[key] = made
        return made

    def _parse(self, name: str, value: str) -> str:
        """The registry's header object; the value as text when the registry raises (it
        raises many kinds: AttributeError on `a:;b:;` in From, ValueError for a NUL in an
        RFC 2231 charset of Content-Type, which made the S/MIME stage fail the message).
        As an address field, text is unparseable (see mailboxes)."""
        try:
            return self._registry(name, value)
        except Exception:  # noqa: BLE001 - see above
            return value


# policy.default with the remembering registry: what the S/MIME verifier reads headers with.
HEADER_POLICY = email.policy.default.clone(header_factory=_ParsedHeaders())


def mailboxes(hdrs: email.message.Message, name: str) -> Mailboxes:
    """The strict reading of header `name` (lower case; `hdrs` read with HEADER_POLICY): each field
    parsed on its own, so one bad field cannot hide behind a good one."""
    raw = [v for k, v in hdrs.raw_items() if k.lower() == name]
    found: list[str] = []
    bad = False
    for text in raw:
        try:
            value = hdrs.policy.header_fetch_parse(name, text)
            groups = tuple(getattr(value, "groups", ()) or ())
            defects = tuple(getattr(value, "defects", ()) or ())
            # The email package's parser raises many kinds of errors (AttributeError on
            # `a:;b:;`, IndexError on `a@`): all of them mean "not one clean mailbox". A field
            # too costly to parse, or one the registry raised on, comes back as plain text:
            # no groups, so unparseable too (HEADER_POLICY's registry, _ParsedHeaders).
            for group in groups:
                if group.display_name is not None:
                    bad = True  # group syntax is not a mailbox (RFC 5322 3.6.2)
                for addr in group.addresses:
                    if not addr.username or not addr.domain:
                        bad = True
                    found.append(str(addr.addr_spec))
        except Exception:  # noqa: BLE001 - see above: any parser failure is "unparseable"
            bad = True
            continue
        # An invalid address list is where our reading and a client's display can part ways.
        # Obsolete syntax (a period in a display name) and raw 8-bit bytes in a display name
        # are what real clients write, and leave the addr-spec as clear as ever.
        if any(isinstance(d, _ADDRESS_DEFECTS) for d in defects):
            bad = True
        if not groups:
            bad = True  # an empty From
    return Mailboxes(tuple(found), len(raw), bad)


def _date(hdrs: email.message.Message) -> dt.datetime | None:
    raw = [v for k, v in hdrs.raw_items() if k.lower() == "date"]
    if len(raw) != 1:
        return None
    try:
        when = email.utils.parsedate_to_datetime(str(raw[0]).strip())
    except (TypeError, ValueError, IndexError, OverflowError):  # OverflowError: a huge year
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


# RFC 8551 3.10: clients may send S/MIME as application/octet-stream named by extension.
_P7M_NAMES = (".p7m",)
_P7S_NAMES = (".p7s",)


def header_param(hdrs: email.message.Message, param: str,
                 header: str = "content-type") -> str | tuple[str, str, str] | None:
    """``hdrs.get_param(param, header=header)``, None where the email package raises: RFC 2231
    continuations mixing ``name*`` and ``name*1`` made it sort None against 1 (TypeError),
    which failed the S/MIME stage for any message so labelled (found by the smime_mime fuzz
    target)."""
    try:
        return hdrs.get_param(param, header=header)  # type: ignore[return-value]
    except (TypeError, ValueError, LookupError, IndexError):
        return None


def parse_tree(entity: bytes) -> email.message.Message | None:
    """The MIME tree of `entity` (compat32), or None where the email package cannot read its
    structure: a multipart whose boundary mixes RFC 2231 sections makes the parser itself
    raise TypeError (as header_param's get_param does), found by the smime_mime fuzz target
    after header_param had been fixed."""
    try:
        return email.parser.BytesParser(policy=email.policy.compat32).parsebytes(entity)
    except (TypeError, ValueError, LookupError, IndexError, RecursionError):
        return None


def _octet_name(hdrs: email.message.Message) -> str:
    if hdrs.get_content_type() != "application/octet-stream":
        return ""
    for param, field in (("name", "content-type"), ("filename", "content-disposition")):
        value = header_param(hdrs, param, field)
        if isinstance(value, tuple):
            value = value[2]
        if isinstance(value, str) and value.strip():
            return value.strip().lower()
    return ""


def _decode_b64(body: bytes, where: str) -> bytes:
    try:
        return base64.b64decode(re.sub(rb"\s+", b"", body), validate=True)
    except ValueError:
        raise MalformedError(f"{where}: the signature is not valid base64") from None


def locate_signed(message: bytes) -> Located:
    """Find the S/MIME signature of a whole message; the signed part must be the whole body."""
    message = to_crlf(message)
    head, body = split_entity(message)
    hdrs = email.parser.BytesHeaderParser(policy=HEADER_POLICY).parsebytes(head + b"\r\n")
    author = mailboxes(hdrs, "from")
    # A From header listing several mailboxes is as ambiguous as several From headers.
    from_count = max(author.fields, len(author.addresses))
    from_address = author.single
    from_unparseable = author.fields > 0 and author.unparseable and from_count <= 1
    sender_address = mailboxes(hdrs, "sender").single
    date = _date(hdrs)
    ctype = hdrs.get_content_type()
    if _octet_name(hdrs).endswith(_P7M_NAMES):
        ctype = "application/pkcs7-mime"
    if ctype == "multipart/signed":
        boundary = header_param(hdrs, "boundary")
        if not isinstance(boundary, str) or not boundary:
            raise MalformedError("multipart/signed without a boundary parameter")
        # The boundary as sent: 8-bit bytes in it are surrogates here (they raised
        # UnicodeEncodeError, found by running mutated client messages through the stages).
        delim = b"--" + boundary.encode("utf-8", "surrogateescape")
        text = b"\r\n" + body
        start = text.find(b"\r\n" + delim + b"\r\n")
        if start < 0:
            raise MalformedError("multipart/signed: first boundary not found")
        part_start = start + len(delim) + 4
        end = text.find(b"\r\n" + delim, part_start)
        if end < 0:
            raise MalformedError("multipart/signed: second boundary not found")
        signed = text[part_start:end]
        sig_start = end + len(delim) + 2
        if not text.startswith(b"\r\n", sig_start):
            raise MalformedError("multipart/signed: malformed boundary before the signature")
        close = text.find(b"\r\n" + delim + b"--", sig_start)
        if close < 0:
            raise MalformedError("multipart/signed: closing boundary not found")
        sig_head, sig_body = split_entity(text[sig_start + 2 : close])
        sig_hdrs = email.parser.BytesHeaderParser(policy=HEADER_POLICY).parsebytes(
            sig_head + b"\r\n"
        )
        if sig_hdrs.get_content_type() not in (
            "application/pkcs7-signature", "application/x-pkcs7-signature"
        ) and not _octet_name(sig_hdrs).endswith(_P7S_NAMES):
            raise MalformedError("multipart/signed: second part is not a pkcs7-signature")
        return Located("detached", _decode_b64(sig_body, "signature part"), signed,
                       from_address, from_count, sender_address, from_unparseable, date)
    if ctype in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
        st = header_param(hdrs, "smime-type")
        if st not in (None, "signed-data"):
            raise MalformedError(f"application/pkcs7-mime with smime-type={st} is not signed")
        return Located("opaque", _decode_b64(body, "pkcs7-mime body"), None, from_address,
                       from_count, sender_address, from_unparseable, date)
    if ctype.startswith("multipart/"):
        whole = parse_tree(message)
        if whole is None:
            raise MalformedError(f"no S/MIME signature: the message is {ctype}, and its MIME "
                                 "structure cannot be read")
        if any(p.get_content_type() in _SIGNED_TYPES for p in whole.walk()):
            raise PartiallySigned(
                "a signed part is nested inside the message; the whole body is not signed"
            )
    raise MalformedError(f"no S/MIME signature: the message is {ctype}")


# One header field line: a name of printable ASCII without a colon, then a colon; or a
# continuation line (RFC 5322 2.2, 3.6.8). Values are checked for NUL and bare CR only: 8-bit
# values (RFC 6532) are real mail.
_FIELD_LINE = re.compile(rb"[!-9;-~]+[ \t]*:[^\0\r\n]*|[ \t][^\0\r\n]*")
# A header block larger than this is not one a real client writes (and is refused anyway).
_ENTITY_HEAD_MAX = 256 * 1024


def is_mime_entity(content: bytes) -> bool:
    """Whether decrypted content has the shape of a MIME entity (RFC 8551 3: what S/MIME
    encrypts): a header block of well-formed field lines ended by an empty line, or an empty
    header block. Random bytes (content decrypted with a wrong key whose CBC padding happened to
    look valid, about 1 in 256) fail this; no real message does."""
    if content.startswith((b"\r\n", b"\n")):
        # No header fields: text/plain by default (RFC 2045 5.2), so the rest must be text.
        # Random bytes start with a line break about once in 256: not that alone, then.
        return _is_text(content)
    head = content[:_ENTITY_HEAD_MAX]
    end = re.search(rb"\r?\n\r?\n", head)
    if end is None:
        if len(content) > _ENTITY_HEAD_MAX:
            return False
        block = head.rstrip(b"\r\n")  # an entity that is all headers
    else:
        block = head[: end.start()]
    lines = _LINE.split(block)
    return not lines[0][:1].isspace() and all(_FIELD_LINE.fullmatch(line) for line in lines)


_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def is_plausible_content(content: bytes) -> bool:
    """A MIME entity, or plain UTF-8 text without control characters: what `openssl cms
    -encrypt -binary` of a text file (RFC 4134's examples among them) puts in an envelope.
    Random bytes of one AES block or more pass this about once in a million."""
    return is_mime_entity(content) or _is_text(content)


def _is_text(content: bytes) -> bool:
    """UTF-8 without control characters (tab, line breaks and form feed allowed)."""
    if _CONTROL.search(content):
        return False
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# The gateway writes its verdict only into headers with this prefix (smime.md 6 step 6);
# copies arriving from outside are forgeries and are removed before the verdict is added.
STATUS_HEADER_PREFIX = "X-Filterlang-SMIME-"


def strip_status_headers(message: bytes, names: tuple[str, ...] = ()) -> bytes:
    """Remove inbound status headers (the prefix above, plus `names`) from the top-level
    header block; everything else, including the body, is returned byte for byte."""
    message = to_crlf(message)
    head, sep, body = message.partition(b"\r\n\r\n")
    prefix = STATUS_HEADER_PREFIX.lower().encode()
    banned = {n.lower().encode() for n in names}
    lowered = head.lower()
    # Per message on the gateway: rebuild the header block only when a candidate is there.
    if prefix.rstrip(b"-") not in lowered and not any(b in lowered for b in banned):
        return message if sep or message.endswith(b"\r\n") else message + b"\r\n"
    kept = [
        f for f in _headers(head + b"\r\n")
        if not (_name(f).startswith(prefix) or _name(f) in banned)
    ]
    return b"\r\n".join(kept) + (b"\r\n\r\n" + body if sep else b"\r\n")


def inner_from(content: bytes) -> str | None:
    """The From addr-spec inside signed content: a protected header (RFC 9788) on the signed
    entity itself, or the header of a signed message/rfc822. None when there is none."""
    head, body = split_entity(to_crlf(content))
    parser = email.parser.BytesHeaderParser(policy=HEADER_POLICY)
    hdrs = parser.parsebytes(head + b"\r\n")
    # `in`, not .get(): reading From parses it, and the email package can raise on a group.
    if "from" not in hdrs and hdrs.get_content_type() == "message/rfc822":
        hdrs = parser.parsebytes(split_entity(body)[0] + b"\r\n")
    inner = mailboxes(hdrs, "from")
    if inner.fields == 0:
        return None
    if inner.unparseable:
        # Never equal to a real From, so a protected header we cannot read fails the check.
        return "(unparseable)"
    return ",".join(inner.addresses)
