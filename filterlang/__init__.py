"""The filter language: grammar, AST, checks, diagnostics, formatter and compiler.

The façade, one function per job::

    parse(text, path)                      -> (Script | None, [Diagnostic])   syntax only
    check_source(text, path, names=None)   -> [Diagnostic]                    syntax + checks
    check_bytes(data, path, names=None)    -> [Diagnostic]                    same, from bytes
    compile_source(text, path, names=None) -> (compiled | None, [Diagnostic])
    compile_file(path, names=None)         -> (compiled | None, [Diagnostic])
    format_source(text, path)              -> (str | None, [Diagnostic])

``names`` carries the gateway configuration's resource names (quarantines, profiles, ...) for
the checker. The checker and the compiler live in their own modules and are imported lazily,
so the parser works on its own.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from filterlang.diagnostics import Diagnostic, Severity, capped
from filterlang.parse import parse, parse_bytes

__all__ = [
    "Diagnostic",
    "Severity",
    "check_bytes",
    "check_source",
    "compile_file",
    "compile_source",
    "format_source",
    "parse",
    "parse_bytes",
]


def _optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"filterlang.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"filterlang.{name}":
            raise
        return None


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause the cyclic garbage collector for one front-end run.

    Parse, check and compile allocate hundreds of thousands of small acyclic objects (nodes,
    spans, diagnostics); left on, the collector rescans the growing heap again and again,
    which costs more than the checker itself on large files. Nothing here makes cycles.

    When it resumes, the collector's first pass scans every object made meanwhile that is
    still alive: callers drop the syntax tree inside the block (only the result survives),
    which makes that pass several times cheaper.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _check(script: Any, names: Any) -> list[Diagnostic]:
    module = _optional("check")
    if module is None or script is None:
        return []
    return list(module.check(script, names=names))


def check_source(text: str, path: str = "<string>", *, names: Any = None) -> list[Diagnostic]:
    """Parse and check filter source; every diagnostic, sorted by position."""
    with _no_cycle_collection():
        script, diags = parse(text, path)
        diags = diags + _check(script, names)
        del script  # see _no_cycle_collection
    return capped(sorted(diags, key=Diagnostic.sort_key))


def check_bytes(data: bytes, path: str, *, names: Any = None) -> list[Diagnostic]:
    """As ``check_source`` for raw file contents (F107 when they are not UTF-8 text)."""
    with _no_cycle_collection():
        script, diags = parse_bytes(data, path)
        diags = diags + _check(script, names)
        del script  # see _no_cycle_collection
    return capped(sorted(diags, key=Diagnostic.sort_key))


def _has_errors(diags: list[Diagnostic]) -> bool:
    return any(d.severity is Severity.ERROR for d in diags)


def _compile(script: Any, diags: list[Diagnostic], names: Any) -> tuple[Any, list[Diagnostic]]:
    diags = sorted(diags + _check(script, names), key=Diagnostic.sort_key)
    module = _optional("compile")
    if script is None or _has_errors(diags) or module is None:
        return None, diags
    compile_script = getattr(module, "compile_script", None) or module.compile
    return compile_script(script), diags


def compile_source(
    text: str, path: str = "<string>", *, names: Any = None
) -> tuple[Any, list[Diagnostic]]:
    """Parse, check and compile; the compiled result is None when there is any error."""
    with _no_cycle_collection():
        script, diags = parse(text, path)
        result = _compile(script, diags, names)
        del script  # see _no_cycle_collection
    return result


def compile_file(path: str | Path, *, names: Any = None) -> tuple[Any, list[Diagnostic]]:
    """As ``compile_source`` for a file (read as UTF-8 bytes; F107 when it is not)."""
    data = Path(path).read_bytes()
    with _no_cycle_collection():
        script, diags = parse_bytes(data, str(path))
        result = _compile(script, diags, names)
        del script  # see _no_cycle_collection
    return result


def format_source(
    text: str, path: str = "<string>", *, fix: bool = False
) -> tuple[str | None, list[Diagnostic]]:
    """The canonical layout of ``text``; None (and the syntax errors) when it does not parse.

    With ``fix``, pasted-text damage (F115) does not stop it: the layout is printed from the
    repaired reading, so the result has the ASCII characters.
    """
    from filterlang.fmt import format_script

    script, diags = parse(text, path)
    blocking = [d for d in diags if not (fix and d.code == "F115")]
    if script is None or _has_errors(blocking):
        return None, diags
    return format_script(script), diags
