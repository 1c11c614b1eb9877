"""Which gateway configuration a filter file is checked against, loaded as `lint --config`.

In order: the client's ``filterlang.config`` setting (relative to the workspace root), a
``gateway.toml`` in the file's folder or any folder above it, then ``$FILTERLANG_CONFIG`` as
for lint (``runtime.config.names`` serves both). With none, configured names are not checked
(and not completed). A configuration that cannot be used is reported on the configuration
file itself, one diagnostic per problem, and filters are then checked as if there were none,
rather than against a guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from attrs import field, frozen

from filterlang.check import ResourceNames
from runtime.config.names import config_from_env, load_names
from runtime.config.schema import ConfigError, ConfigIssue
from runtime.lsp.toml_index import Place, index

CONFIG_NAME = "gateway.toml"
_TOML_AT = re.compile(r"at line (\d+), column (\d+)")


@frozen
class Problem:
    """One mistake in a configuration file, where it is (0-based line and column)."""

    line: int
    col: int
    message: str


@frozen
class Config:
    """A configuration as the server uses it; ``names`` is None when it cannot be used."""

    path: Path
    names: ResourceNames | None
    problems: tuple[Problem, ...] = ()
    places: Mapping[tuple[str, str], Place] = field(factory=dict)


def _locate(text: str, key: str) -> int:
    """The line of a dotted key such as ``profiles.sign.signing_certificate`` (a best guess:
    each part is looked for below the line of the part before it)."""
    lines = text.split("\n")
    line = 0
    for part in (p for p in re.split(r"[.\[\]]+", key) if p and not p.isdigit()):
        word = re.compile(rf"(?<![\w-]){re.escape(part)}(?![\w-])")
        line = next((i for i in range(line, len(lines)) if word.search(lines[i])), line)
    return line


def _problem(path: Path, text: str, issue: ConfigIssue) -> Problem:
    if Path(issue.file) != path:  # another file (a profiles file): nothing to point at here
        return Problem(0, 0, str(issue))
    found = _TOML_AT.search(issue.message)
    if issue.key == "(syntax)" and found:
        return Problem(int(found.group(1)) - 1, int(found.group(2)) - 1, issue.message)
    if issue.key.startswith("("):
        return Problem(0, 0, issue.message)
    return Problem(_locate(text, issue.key), 0, f"{issue.key}: {issue.message}")


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class Settings:
    """The configuration setting and the configurations loaded so far (reloaded on change)."""

    def __init__(self) -> None:
        self.setting: str | None = None
        self.root: Path | None = None
        self._loaded: dict[Path, tuple[tuple[int, int] | None, Config]] = {}

    def config_path(self, document: Path | None) -> Path | None:
        """The configuration for a document (a file path, or None for an unsaved one)."""
        if self.setting:
            chosen = Path(self.setting).expanduser()
            if not chosen.is_absolute() and self.root is not None:
                chosen = self.root / chosen
            return chosen.resolve()
        if document is not None:
            for folder in document.resolve().parents:
                candidate = folder / CONFIG_NAME
                if candidate.is_file():
                    return candidate
        from_env = config_from_env()
        return Path(from_env).resolve() if from_env else None

    def load(self, path: Path) -> Config:
        """The configuration at ``path``, loaded again only when the file changed."""
        stamp = _stamp(path)
        cached = self._loaded.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        try:
            config = Config(path, load_names(path), (), index(text))
        except ConfigError as exc:
            problems = tuple(_problem(path, text, issue) for issue in exc.issues)
            config = Config(path, None, problems, index(text))
        self._loaded[path] = (stamp, config)
        return config

    def for_document(self, document: Path | None) -> Config | None:
        """The configuration a document is checked against, or None."""
        path = self.config_path(document)
        return None if path is None else self.load(path)
