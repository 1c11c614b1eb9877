"""Property: for any filter text the grammar accepts, `fmt` is idempotent and keeps meaning.

The generator follows the grammar (reference 3.1 plus the content-filter header) and varies
everything the canonical layout normalises: letter case of keywords and names, both quote
characters and escapes, size suffix case, optional parentheses, whitespace, line breaks and
comment lines between any two tokens.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filterlang import format_source, parse

KEYWORDS = {"if", "else", "and", "or", "not", "content-filter"}

names = st.from_regex(r"[a-z_][a-z0-9_-]{0,8}", fullmatch=True).filter(lambda n: n not in KEYWORDS)


@st.composite
def cased(draw: st.DrawFn, word: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c for c in word)


@st.composite
def strings(draw: st.DrawFn) -> str:
    value = draw(st.text(alphabet="ab .#$'\"\\\t\nZé(", max_size=8))
    q = draw(st.sampled_from("'\""))
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == q:
            out.append("\\" + q)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append(draw(st.sampled_from(["\t", "\\t"])))
        else:
            out.append(ch)
    return q + "".join(out) + q


numbers = st.one_of(
    st.integers(-1000, 100000).map(str),
    st.tuples(st.integers(-10, 10), st.integers(0, 99)).map(lambda t: f"{t[0]}.{t[1]}"),
)
sizes = st.tuples(st.integers(0, 9999), st.sampled_from("bBkKmMgG")).map(lambda t: f"{t[0]}{t[1]}")
lists = st.lists(strings(), max_size=3).map(lambda items: "[" + " , ".join(items) + "]")
arguments = st.one_of(strings(), numbers, sizes, lists)
operands = st.one_of(strings(), numbers, sizes)


@st.composite
def rule_tests(draw: st.DrawFn) -> list[str]:
    toks = [draw(cased(draw(names)))]
    if draw(st.booleans()):
        args = draw(st.lists(arguments, max_size=3))
        toks += ["(", " , ".join(args), ")"]
    if draw(st.booleans()):
        toks += [draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="])), draw(operands)]
    return toks


def _extend(children: st.SearchStrategy[list[str]]) -> st.SearchStrategy[list[str]]:
    word = st.sampled_from(["and", "or"]).flatmap(cased)
    return st.one_of(
        st.tuples(cased("not"), children).map(lambda t: [t[0], *t[1]]),
        children.map(lambda c: ["(", *c, ")"]),
        st.tuples(children, word, children).map(lambda t: [*t[0], t[1], *t[2]]),
    )


conditions = st.recursive(rule_tests(), _extend, max_leaves=6)


@st.composite
def actions(draw: st.DrawFn) -> list[str]:
    args = draw(st.lists(arguments, max_size=3))
    return [draw(cased(draw(names))), "(", " , ".join(args), ")", ";"]


@st.composite
def if_stmts(draw: st.DrawFn, depth: int = 0) -> list[str]:
    def block() -> list[str]:
        stmts: list[str] = []
        for _ in range(draw(st.integers(1, 3))):
            if depth < 2 and draw(st.integers(0, 4)) == 0:
                stmts += draw(if_stmts(depth + 1))
            else:
                stmts += draw(actions())
        return ["{", *stmts, "}"]

    toks = [draw(cased("if")), *draw(conditions), *block()]
    if draw(st.booleans()):
        toks += [draw(cased("else")), *block()]
    return toks


@st.composite
def filters(draw: st.DrawFn) -> list[str]:
    name = draw(names)
    mark = draw(st.sampled_from([":", "!"]))
    head: list[str] = []
    if draw(st.integers(0, 3)) == 0:
        head.append("content-filter")
        head += [name, mark]
        if draw(st.booleans()):
            head += [draw(cased("description")), draw(strings())]
        head += [
            draw(cased("direction")),
            draw(cased(draw(st.sampled_from(["incoming", "outgoing"])))),
        ]
        if draw(st.booleans()):
            head += [draw(cased("apply")), draw(cased(draw(st.sampled_from(["all", "any"]))))]
    else:
        if draw(st.booleans()):
            head.append("\n# description: generated\n")
        head += [name, mark]
    return head + draw(if_stmts())


SEPARATORS = [" ", "  ", "\t", "\n", "\n    ", "\r\n", "\n# a comment\n", "\n\n"]


@st.composite
def scripts(draw: st.DrawFn) -> str:
    tokens: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        tokens += draw(filters())
    seps = draw(st.lists(st.sampled_from(SEPARATORS), min_size=len(tokens), max_size=len(tokens)))
    return "".join(t + s for t, s in zip(tokens, seps, strict=True))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts())
def test_fmt_is_idempotent_and_preserves_meaning(source: str) -> None:
    original, diags = parse(source)
    assert diags == [], source
    once, diags = format_source(source)
    assert diags == [] and once is not None
    assert parse(once)[0] == original
    twice, _ = format_source(once)
    assert twice == once
