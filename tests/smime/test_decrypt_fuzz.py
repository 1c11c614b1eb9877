"""Random corruption of real envelopes: only ever the one DecryptionError or the plaintext."""

from __future__ import annotations

import functools

from hypothesis import given, settings
from hypothesis import strategies as st
from keys_util import recipient

from smime.envelope import decrypt_content, encrypt_content
from smime.errors import DecryptionError

CONTENT = b"fuzz me " * 8


@functools.cache
def _envelope(cipher: str, kind: str) -> bytes:
    return encrypt_content(CONTENT, [recipient(kind)[1]], cipher=cipher)


@settings(max_examples=300, deadline=None)
@given(
    cipher=st.sampled_from(["aes128-cbc", "aes256-gcm"]),
    kind=st.sampled_from(["rsa", "p256"]),
    edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1,
                   max_size=4),
    cut=st.integers(min_value=0, max_value=64),
)
def test_mutations_never_escape_as_other_errors(
    cipher: str, kind: str, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(_envelope(cipher, kind))
    for position, value in edits:
        data[position % len(data)] = value
    mutated = bytes(data[: len(data) - cut])
    try:
        result = decrypt_content(mutated, [recipient(kind)])
    except DecryptionError as exc:
        assert str(exc) == DecryptionError.MESSAGE
        return
    # Only a change outside the protected bytes (or CBC garbage) can get through.
    assert result.content == CONTENT or not result.authenticated
