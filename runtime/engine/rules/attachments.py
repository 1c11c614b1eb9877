"""Attachment metadata rules (reference 6.7)."""

from __future__ import annotations

import fnmatch
import io
import mimetypes
import tarfile
import zipfile

from filterlang.compile import CRule
from runtime.engine import archives, filetypes
from runtime.engine.context import MessageContext
from runtime.engine.mimewalk import MAX_SCAN, Part
from runtime.engine.rules.common import RuleResult, compare_num, compare_regex, operand, parts

MAX_ARCHIVE_DEPTH = 5
SCAN_LIMIT = 2 * MAX_SCAN  # encoded size; larger attachments are not opened (reference 5.9)


def attachments(ctx: MessageContext) -> list[Part]:
    return [p for p in parts(ctx) if not p.is_body]


def member_names(data: bytes, fingerprint: str, depth: int = 0) -> list[str]:
    """Names inside zip/tar archives, recursively up to the configured depth (reference 5.9)."""
    if depth >= MAX_ARCHIVE_DEPTH:
        return []
    names: list[str] = []
    try:
        if fingerprint == "zip":
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                for info in zf.infolist()[:1000]:
                    names.append(info.filename)
                    if info.filename.lower().endswith(".zip") and not info.flag_bits & 1 \
                            and info.file_size < 5 * 1024 * 1024:
                        names += member_names(zf.read(info), "zip", depth + 1)
        elif fingerprint == "tar":
            with tarfile.open(fileobj=io.BytesIO(data)) as tf:
                names += [m.name for m in tf.getmembers()[:1000]]
    except Exception:
        return names
    return names


def attachment_filename(ctx: MessageContext, t: CRule) -> RuleResult:
    names: list[str] = []
    for p in attachments(ctx):
        if p.filename:
            names.append(p.filename)
        fp = p.filetype
        if fp in ("zip", "tar") and p.encoded_size <= SCAN_LIMIT:
            names += member_names(p.payload, fp)
    return compare_regex(t, names, "attachment names", missing_ne=False)


def _type_of(p: Part) -> str:
    # The guide: the type is guessed from the extension "if there is no explicit type given"
    # (and for the generic octet-stream, which says no more).
    if (not p.typed or p.declared_type in ("application/octet-stream", "")) and p.filename:
        guessed, _ = mimetypes.guess_type(p.filename)
        return guessed or p.declared_type
    return p.declared_type


def attachment_type(ctx: MessageContext, t: CRule) -> RuleResult:
    want = str(operand(t)).lower()
    types = [_type_of(p) for p in attachments(ctx)]
    for p in attachments(ctx):
        if p.filetype in ("zip", "tar") and p.encoded_size <= SCAN_LIMIT:
            types += [mimetypes.guess_type(n)[0] or "application/octet-stream"
                      for n in member_names(p.payload, p.filetype)]
    hits = [x for x in types if fnmatch.fnmatchcase(x.lower(), want)]
    ok = bool(hits) if t.comparator != "!=" else any(x not in hits for x in types)
    return RuleResult(ok, f"attachment types {types}")


def attachment_mimetype(ctx: MessageContext, t: CRule) -> RuleResult:
    want = str(operand(t)).lower()
    types = [p.declared_type for p in attachments(ctx)]
    ok = (want in types) if t.comparator != "!=" else any(x != want for x in types)
    return RuleResult(ok, f"declared types {types}")


def attachment_filetype(ctx: MessageContext, t: CRule) -> RuleResult:
    want = str(operand(t))
    kinds = [p.filetype for p in attachments(ctx)]
    hits = [k for k in kinds if filetypes.matches(k, want)]
    ok = bool(hits) if t.comparator != "!=" else any(not filetypes.matches(k, want) for k in kinds)
    return RuleResult(ok, f"sniffed types {kinds}")


def attachment_size(ctx: MessageContext, t: CRule) -> RuleResult:
    sizes = [p.encoded_size for p in attachments(ctx)]
    for s in sizes:
        if compare_num(t, s, "size").value:
            return RuleResult(True, f"an attachment of {s} bytes")
    return RuleResult(False, f"attachment sizes {sizes}")


def _protections(ctx: MessageContext) -> list[str]:
    out: list[str] = []
    for p in attachments(ctx):
        if p.encoded_size > SCAN_LIMIT:
            ctx.defects.append(f"{p.filename or p.declared_type}: too large to open for protection checks")
            continue
        out.append(archives.protection(p.payload, p.filetype))
    return out


def attachment_protected(ctx: MessageContext, t: CRule) -> RuleResult:
    prot = _protections(ctx)
    return RuleResult(any(x in ("protected", "both") for x in prot), f"protection {prot}")


def attachment_unprotected(ctx: MessageContext, t: CRule) -> RuleResult:
    prot = _protections(ctx)
    return RuleResult(any(x in ("unprotected", "both") for x in prot), f"protection {prot}")


def attachment_corrupt(ctx: MessageContext, t: CRule) -> RuleResult:
    prot = _protections(ctx)
    return RuleResult("corrupt" in prot, f"protection {prot}")
