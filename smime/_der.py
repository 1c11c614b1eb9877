"""Minimal DER writing for the hot paths that splice pre-encoded parts (no ASN.1 tree)."""

from __future__ import annotations

OID_DATA = bytes.fromhex("06092a864886f70d010701")  # id-data, with tag and length
OID_SIGNED_DATA = bytes.fromhex("06092a864886f70d010702")
OID_ENVELOPED_DATA = bytes.fromhex("06092a864886f70d010703")
OID_AUTH_ENVELOPED_DATA = bytes.fromhex("060b2a864886f70d0109100117")


def length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, value: bytes) -> bytes:
    """One DER element: single-byte tag, definite length, `value`."""
    return bytes([tag]) + length(len(value)) + value


def content_info(oid_tlv: bytes, content: bytes) -> bytes:
    """ContentInfo ::= SEQUENCE { contentType, [0] EXPLICIT content }."""
    return tlv(0x30, oid_tlv + tlv(0xA0, content))
