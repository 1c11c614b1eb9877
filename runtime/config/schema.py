"""A small typed reader over a parsed TOML table that reports mistakes by dotted key.

Every mistake becomes one `ConfigIssue` line naming the key and the fix; unknown keys get a
did-you-mean. The reader collects all issues instead of stopping at the first, so an operator
fixes a config in one pass.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from attrs import frozen

T = TypeVar("T")


@frozen
class ConfigIssue:
    """One mistake: where (file and dotted key) and what to do about it."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}"


class ConfigError(Exception):
    """The configuration is invalid; `issues` holds one line per mistake."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


def _type_name(value: object) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


class Table:
    """A view of one TOML table at a dotted path; records issues into a shared list."""

    def __init__(
        self, data: dict[str, Any], path: str, file: Path, issues: list[ConfigIssue]
    ) -> None:
        self._data = data
        self._path = path
        self._file = file
        self._issues = issues
        self._seen: set[str] = set()

    @property
    def base_dir(self) -> Path:
        return self._file.parent

    def key(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def error(self, name: str, message: str) -> None:
        self._issues.append(ConfigIssue(str(self._file), self.key(name), message))

    def has(self, name: str) -> bool:
        return name in self._data

    def known(self, name: str) -> None:
        """Mark an optional key read only when given as known, so that a misspelling of it
        is told its name (did you mean ...?)."""
        self._seen.add(name)

    def _get(self, name: str, kind: type | tuple[type, ...], default: Any, required: bool) -> Any:
        self._seen.add(name)
        if name not in self._data:
            if required:
                self.error(name, "is required; add it")
            return default
        value = self._data[name]
        # bool is a subclass of int in Python; TOML keeps them apart and so do we.
        if isinstance(value, bool) and kind is not bool and not (
            isinstance(kind, tuple) and bool in kind
        ):
            ok = False
        else:
            ok = isinstance(value, kind)
        if not ok:
            want = kind if isinstance(kind, type) else kind[0]
            self.error(name, f"must be {_type_name(want())}, not {_type_name(value)}")
            return default
        return value

    def text(self, name: str, default: str | None = None, *, required: bool = False) -> Any:
        return self._get(name, str, default, required)

    def integer(
        self, name: str, default: int | None = None, *, minimum: int = 0, required: bool = False
    ) -> Any:
        value = self._get(name, int, default, required)
        if isinstance(value, int) and value < minimum:
            self.error(name, f"must be at least {minimum}, not {value}")
            return default
        return value

    def number(self, name: str, default: float | None = None, *, minimum: float = 0.0) -> Any:
        value = self._get(name, (int, float), default, False)
        if isinstance(value, int | float) and value < minimum:
            self.error(name, f"must be at least {minimum}, not {value}")
            return default
        return None if value is None else float(value)

    def flag(self, name: str, default: bool) -> bool:
        return bool(self._get(name, bool, default, False))

    def choice(self, name: str, choices: tuple[str, ...], default: str | None = None) -> Any:
        value = self._get(name, str, default, default is None)
        if isinstance(value, str) and value not in choices:
            hint = difflib.get_close_matches(value, choices, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            self.error(name, f"must be one of {', '.join(choices)}, not {value!r}{extra}")
            return default
        return value

    def str_list(self, name: str) -> tuple[str, ...]:
        value = self._get(name, list, [], False)
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.error(f"{name}[{i}]", f"must be a string, not {_type_name(item)}")
            else:
                out.append(item)
        return tuple(out)

    def path(self, name: str, default: str | None = None, *, required: bool = False) -> Any:
        """A file path; relative paths are relative to the file that holds the key."""
        value = self.text(name, default, required=required)
        if value is None:
            return None
        if value.startswith("maildir:"):
            return value
        return (self.base_dir / value).resolve()

    def table(self, name: str) -> Table:
        value = self._get(name, dict, {}, False)
        return Table(value, self.key(name), self._file, self._issues)

    def tables(self, name: str) -> list[tuple[str, Table]]:
        """`[name.X]` sections: a table of tables keyed by their names."""
        outer = self._get(name, dict, {}, False)
        result: list[tuple[str, Table]] = []
        for sub, value in outer.items():
            if not isinstance(value, dict):
                self._issues.append(
                    ConfigIssue(
                        str(self._file), f"{self.key(name)}.{sub}", "must be a table ([...])"
                    )
                )
                continue
            result.append((sub, Table(value, f"{self.key(name)}.{sub}", self._file, self._issues)))
        return result

    def array_of_tables(self, name: str) -> list[Table]:
        """`[[name]]` sections."""
        value = self._get(name, list, [], False)
        out: list[Table] = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                self.error(f"{name}[{i}]", "must be a table ([[...]])")
                continue
            out.append(Table(item, f"{self.key(name)}[{i}]", self._file, self._issues))
        return out

    def finish(self, known: Iterable[str] = ()) -> None:
        """Report every key nobody asked for, with the closest known key as a hint."""
        allowed = self._seen | set(known)
        for name in self._data:
            if name in allowed:
                continue
            hint = difflib.get_close_matches(name, sorted(allowed), n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else "; remove it"
            self.error(name, f"unknown key{extra}")

    def each(self, name: str, build: Callable[[str, Table], T]) -> tuple[T, ...]:
        out = []
        for sub, table in self.tables(name):
            out.append(build(sub, table))
            table.finish()
        return tuple(out)


def unknown_keys(data: object, known: Iterable[str], where: str) -> list[str]:
    """One line per key of the table ``data`` that is not in ``known``, naming the nearest known
    key: for the TOML files read outside gateway.toml (suites, --resources, --policies), where a
    misspelt key used to be ignored and so checked nothing."""
    if not isinstance(data, dict):
        return []
    allowed = sorted(set(known))
    out = []
    for name in data:
        if name in allowed:
            continue
        hint = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        extra = f"did you mean {hint[0]!r}?" if hint else f"known keys: {', '.join(allowed)}"
        out.append(f"{where}{'.' if where else ''}{name}: unknown key; {extra}")
    return out
