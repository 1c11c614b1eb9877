"""Named configuration resources the runtime reads: dictionaries, text resources, archives.

The gateway's config loader builds one ``Resources``; ``filterlang test`` builds it from the
suite file or ``--resources``. A missing dictionary makes its rule false (reference 4.1).
"""

from __future__ import annotations

from pathlib import Path

from attrs import define, field, frozen


@frozen
class Dictionary:
    """Terms with weights; regex terms unless ``words`` (whole-word plain text) is set."""

    name: str
    terms: tuple[tuple[str, int], ...]
    case_sensitive: bool = False
    whole_words: bool = False

    @classmethod
    def load(cls, name: str, path: Path, *, case_sensitive: bool = False,
             whole_words: bool = False) -> Dictionary:
        """One term a line, optional ``, weight`` at the end; ``#`` lines are comments."""
        terms = []
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            term, sep, weight = line.rpartition(",")
            if sep and weight.strip().lstrip("-").isdigit():
                terms.append((term.strip(), int(weight)))
            else:
                terms.append((line, 1))
        return cls(name, tuple(terms), case_sensitive, whole_words)


@define
class Resources:
    dictionaries: dict[str, Dictionary] = field(factory=dict)
    texts: dict[str, str] = field(factory=dict)  # disclaimers and notification templates
    archive_dir: Path | None = None  # where archive('name') writes name.mbox
    quarantines: set[str] | None = None  # None: any name accepted (offline testing)
