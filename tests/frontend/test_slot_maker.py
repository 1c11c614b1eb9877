"""slot_maker builds the same objects as the attrs constructor, and refuses classes it cannot."""

from __future__ import annotations

import attrs
import pytest
from attrs import field, frozen

from filterlang import ast
from filterlang.ast import Span, make_span, slot_maker

SPAN = Span("f", 1, 2, 3, 4)


@pytest.mark.parametrize(
    ("cls", "values"),
    [
        (ast.Span, ("f", 1, 2, 3, 4)),
        (ast.String, ("a\n", "a\\n", "'", SPAN)),
        (ast.Number, (1.5, "1.5", SPAN)),
        (ast.Filter, ("x", True, None, "d", None, SPAN, Span("f", 1, 1, 1, 2))),
    ],
)
def test_same_object_as_the_constructor(cls: type, values: tuple[object, ...]) -> None:
    names = [f.name for f in attrs.fields(cls)]
    kw_only = {f.name for f in attrs.fields(cls) if f.kw_only}
    expected = cls(
        *[v for n, v in zip(names, values, strict=True) if n not in kw_only],
        **{n: v for n, v in zip(names, values, strict=True) if n in kw_only},
    )
    made = slot_maker(cls)(*values)
    assert type(made) is cls
    assert attrs.astuple(made, recurse=False) == attrs.astuple(expected, recurse=False)
    assert made == expected and repr(made) == repr(expected)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.span = SPAN  # type: ignore[misc]  # frozen like any other instance


def test_make_span_is_a_span() -> None:
    assert make_span("f", 1, 2, 3, 4) == SPAN
    assert hash(make_span("f", 1, 2, 3, 4)) == hash(SPAN)


@frozen
class _Validated:
    value: int = field(validator=attrs.validators.instance_of(int))


@frozen
class _Converted:
    value: int = field(converter=int)


@frozen
class _Hooked:
    value: int

    def __attrs_post_init__(self) -> None:
        pass


@frozen
class _Private:
    _value: int


@pytest.mark.parametrize("cls", [_Validated, _Converted, _Hooked, _Private])
def test_refuses_classes_whose_init_does_more(cls: type) -> None:
    with pytest.raises(TypeError, match="does more than store"):
        slot_maker(cls)
