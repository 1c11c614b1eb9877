"""filterlang/fastparse.py drives Lark's LALR table itself: the internals it reads are still there.

The fast driver reads Lark's private objects (the ParsingFrontend -> LALR_Parser -> _Parser
chain, the parse table's states, the callback wrappers of parse_tree_builder) and mirrors two
pieces of Lark's code (the basic lexer's terminal order with keyword carving, and the parser
state's token loop). test_parse_drivers.py proves both drivers build the same trees; this
module says *what* moved when a new Lark breaks that.
"""

from __future__ import annotations

import inspect

import lark
import pytest
from dep_internals import changed, source_digest
from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedToken
from lark.lexer import BasicLexer, PatternStr, _create_unless
from lark.parse_tree_builder import ChildFilterLALR_NoPlaceholders, ExpandSingleChild
from lark.parsers.lalr_parser_state import ParserState

from filterlang.parse import _get_parser

# The Lark code fastparse mirrors, as of the version pinned in pyproject.toml (lark 1.3.1).
MIRRORED = {
    "lark.lexer.BasicLexer.__init__ (terminal order)": (BasicLexer.__init__, "d5f6648118a7e3c3"),
    "lark.lexer._create_unless (keywords carved out of NAME)": (_create_unless, "a765b5ecd889af9c"),
    "lark.parsers.lalr_parser_state.ParserState.feed_token": (ParserState.feed_token,
                                                              "198da5c94a41d234"),
    "lark.parse_tree_builder.ChildFilterLALR_NoPlaceholders": (ChildFilterLALR_NoPlaceholders,
                                                               "044741893264c1d8"),
    "lark.parse_tree_builder.ExpandSingleChild": (ExpandSingleChild, "0040f69e68c86c91"),
}


@pytest.mark.parametrize("what", sorted(MIRRORED))
def test_mirrored_lark_code_is_unchanged(what: str) -> None:
    obj, digest = MIRRORED[what]
    assert source_digest(obj) == digest, changed("lark", lark.__version__, what,
                                                 "filterlang/fastparse.py")


def test_the_parser_chain_and_table_have_the_shape_fastparse_reads() -> None:
    compiled = _get_parser().lark
    where = "filterlang/fastparse.py (FastParser.__init__)"
    inner = compiled.parser.parser.parser
    for name in ("parse_table", "callbacks"):
        assert hasattr(inner, name), changed("lark", lark.__version__,
                                             f"_Parser.{name}", where)
    table = inner.parse_table
    for name in ("states", "start_states", "end_states"):
        assert hasattr(table, name), changed("lark", lark.__version__,
                                             f"the parse table's {name}", where)
    assert "start" in table.start_states and "start" in table.end_states
    shifts = reduces = 0
    for actions in table.states.values():
        for _symbol, entry in actions.items():
            assert isinstance(entry, tuple) and len(entry) == 2, changed(
                "lark", lark.__version__, "a table entry's shape (action, argument)", where)
            action, arg = entry
            if action.name == "Shift":
                assert arg in table.states
                shifts += 1
            else:
                assert action.name == "Reduce", changed("lark", lark.__version__,
                                                        f"the table action {action.name!r}", where)
                assert isinstance(arg.expansion, list) and hasattr(arg.origin, "name")
                assert arg in inner.callbacks
                reduces += 1
    assert shifts and reduces


def test_terminals_and_tokens_have_the_fields_fastparse_reads() -> None:
    compiled = _get_parser().lark
    where = "filterlang/fastparse.py (_master_pattern)"
    assert any(isinstance(t.pattern, PatternStr) for t in compiled.terminals)
    for t in compiled.terminals:
        for name in ("name", "priority"):
            assert hasattr(t, name), changed("lark", lark.__version__, f"TerminalDef.{name}", where)
        for name in ("value", "max_width", "to_regexp"):
            assert hasattr(t.pattern, name), changed("lark", lark.__version__,
                                                     f"Pattern.{name}", where)
    token = Token("NAME", "x", 0, 1, 1, 1, 2, 1)
    assert (token.line, token.column, token.end_line, token.end_column, token.end_pos) == (
        1, 1, 1, 2, 1), changed("lark", lark.__version__, "Token's positional fields", where)
    assert Token.new_borrow_pos("$END", "", token).line == 1


def test_the_exceptions_take_the_arguments_fastparse_gives() -> None:
    where = "filterlang/fastparse.py and filterlang/syntax_errors.py"
    params = list(inspect.signature(UnexpectedToken.__init__).parameters)
    assert params[1:3] == ["token", "expected"], changed("lark", lark.__version__,
                                                         "UnexpectedToken's signature", where)
    params = list(inspect.signature(UnexpectedCharacters.__init__).parameters)
    assert params[1:5] == ["seq", "lex_pos", "line", "column"], changed(
        "lark", lark.__version__, "UnexpectedCharacters' signature", where)
