"""No input, however broken, gets a traceback: every case ends in diagnostics, quickly.

Speed is not asserted here (see bench/); the pytest-timeout of the suite catches a hang.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from filterlang import check_bytes, format_source, parse_bytes
from filterlang.build import MAX_ARGS
from filterlang.diagnostics import MAX_DIAGNOSTICS
from runtime.commands.cli import main

TEN_MB = 10 * 1024 * 1024


def _junk(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(size))


CASES: dict[str, bytes] = {
    "binary junk": _junk(1, 4096),
    "10 MB of (": b"(" * TEN_MB,
    "10 MB of ( in a condition": b"x: if " + b"(" * TEN_MB,
    "10 MB of {": b"x: if true " + b"{" * TEN_MB,
    "10 MB of not": b"x: if " + b"not " * (TEN_MB // 4) + b"signed { drop(); }",
    "10 MB of arguments": b"x: if true { f(" + b"'a'," * (TEN_MB // 4) + b"'a'); }",
    "long and chain": b"x: if " + b"a and " * 20_000 + b"b { drop(); }",
    "unterminated string": b"x: if subject == 'abc { drop(); }\n",
    "unterminated string at eof": b'x: if subject == "abc',
    "unterminated string on a long line": b"x: if subject == 'abc" + b"a" * 1_000_000 + b" {",
    "invalid utf-8": b"x: if subject == '\xff\xfe' { drop(); }",
    "lone continuation byte": b"\x80",
    "nul bytes": b"\0" * 1000,
    "only a name": b"x",
    "only punctuation": b"}{)(;:!,[]" * 1000,
    "deep if nesting": b"x: " + b"if a { " * 200 + b"drop(); " + b"} " * 200,
    "many broken filters": b"".join(b"f%d: if x = 'y' { drop(); }\n" % i for i in range(2000)),
    "random printable": bytes(
        random.Random(2).choice(b"abc(){};:!'\"#=<> \n\t-_019") for _ in range(20000)
    ),
}


@pytest.mark.parametrize("data", list(CASES.values()), ids=list(CASES))
def test_parse_and_check_never_raise(data: bytes) -> None:
    script, diags = parse_bytes(data, "junk.filter")
    assert diags, "broken input must produce at least one diagnostic"
    assert all(d.code.startswith("F1") or d.code == "N602" for d in diags)
    check_bytes(data, "junk.filter")


@pytest.mark.parametrize("data", list(CASES.values()), ids=list(CASES))
def test_format_never_raises(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    out, diags = format_source(text)
    assert (out is None) == any(d.severity == "error" for d in diags)


@pytest.mark.parametrize("name", ["10 MB of (", "binary junk", "unterminated string"])
def test_cli_reports_without_traceback(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.filter"
    path.write_bytes(CASES[name])
    assert main(["lint", str(path)]) == 1
    assert main(["fmt", str(path)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err


def test_deep_nesting_points_at_the_65th_level() -> None:
    _, diags = parse_bytes(b"x: if " + b"(" * 100 + b"a" + b")" * 100 + b" { drop(); }", "p")
    assert [(d.code, d.span.col) for d in diags] == [("F108", 7 + 64)]


def test_many_errors_are_reported_up_to_the_cap() -> None:
    _, diags = parse_bytes(CASES["many broken filters"], "p")
    assert [d.code for d in diags] == ["F110"] * MAX_DIAGNOSTICS + ["N602"]


@pytest.mark.parametrize("blank", [b"\n", b" ", b"\r\n\t"])
def test_megabytes_of_blank_space_are_an_empty_script(blank: bytes) -> None:
    # The lexer once backtracked through such a run one character at a time (seconds per MB).
    script, diags = parse_bytes(blank * (TEN_MB // len(blank)), "blank.filter")
    assert diags == []
    assert script is not None and script.filters == ()


@pytest.mark.parametrize(("count", "codes"), [(MAX_ARGS, ["F204"]), (MAX_ARGS + 1, ["F114"])])
def test_argument_count_is_limited(count: int, codes: list[str]) -> None:
    args = ", ".join(["'a'"] * (count + 1))
    diags = check_bytes(b"x: if signed { nosuch(%s); }" % args.encode(), "p")
    assert [d.code for d in diags] == codes
    if codes == ["F114"]:
        assert diags[0].span.col == len("x: if signed { nosuch(") + 1 + 5 * count - 2
