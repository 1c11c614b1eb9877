"""The users file of a submission listener (`users_file`): who may SMTP AUTH, with what password.

One user a line, ``name:hash``, where the hash is argon2id in its PHC string form
(``$argon2id$v=19$m=...,t=...,p=...$salt$hash``, what argon2-cffi writes); blank lines and
lines starting with ``#`` are ignored. The format is Postfix's and Dovecot's passwd-file shape,
so a file can be written by other tools too, and `filterlang users -f FILE add|remove|list`
edits it. Names are kept in lower case: clients differ in the case they send, and
`smtp-auth-id-matches` compares without case anyway.

Checking a password costs tens of milliseconds of CPU (that is what makes a stolen file slow
to attack), so the listener runs `UsersFile.check` in a thread, never on its event loop.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from attrs import frozen

# Characters a name may not hold: the separator, white space, and anything that would end up
# in a header or a log line looking like something else.
_BAD_NAME = set(":#\r\n\t \0")
MAX_NAME = 256


class UsersFileError(Exception):
    """A users file that cannot be read, or a line in it that is not `name:hash`."""


@frozen
class UserLine:
    line: int
    name: str
    hash: str


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a user name, or None."""
    if not name:
        return "is empty"
    if len(name) > MAX_NAME:
        return f"is longer than {MAX_NAME} characters"
    if any(c in _BAD_NAME or not c.isprintable() for c in name):
        return "holds ':', '#', white space or a control character"
    return None


def parse(text: str, where: str) -> tuple[list[UserLine], list[str]]:
    """The users of a file's text, and one problem per bad line (`where:LINE: ...`)."""
    users: list[UserLine] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, hashed = line.partition(":")
        name = name.strip().lower()
        hashed = hashed.strip()
        bad = name_problem(name)
        if not sep:
            problems.append(f"{where}:{number}: not 'name:hash'; write one user a line, as "
                            "`filterlang users add` does")
        elif bad:
            problems.append(f"{where}:{number}: the user name {bad}")
        elif not hashed.startswith("$argon2"):
            problems.append(f"{where}:{number}: the password of {name!r} is not an argon2 hash "
                            "(never a password in clear); set it with `filterlang users add`")
        elif name in seen:
            problems.append(f"{where}:{number}: {name!r} is also on line {seen[name]}; keep one")
        else:
            seen[name] = number
            users.append(UserLine(number, name, hashed))
    return users, problems


def read(path: Path) -> list[UserLine]:
    """Every user of the file at `path`; UsersFileError naming the first problems."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsersFileError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise UsersFileError(f"{path}: invalid UTF-8 at byte {exc.start}") from None
    users, problems = parse(text, str(path))
    if problems:
        raise UsersFileError("\n".join(problems))
    return users


def _hasher():  # type: ignore[no-untyped-def]
    # Imported here: only a submission listener and `filterlang users` need argon2.
    from argon2 import PasswordHasher

    # argon2-cffi's defaults: RFC 9106's second recommended option (argon2id, t=3, 64 MiB, p=4).
    return PasswordHasher()


def hash_password(password: str) -> str:
    return str(_hasher().hash(password))


def write(path: Path, users: list[UserLine]) -> None:
    """Replace the file with `users` (written whole, then renamed over it: a listener reading
    it meanwhile sees the old file or the new one, never half), mode 0600."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    body = "".join(f"{u.name}:{u.hash}\n" for u in users)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("# filterlang users file: name:argon2 hash (`filterlang users` edits it)\n")
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class UsersFile:
    """The users file as a listener checks passwords against it: read again whenever it
    changed on disk (`filterlang users add` takes effect at the next AUTH, no restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._hashes: dict[str, str] = {}
        # A hash to check unknown names against, so that a wrong name costs as long as a wrong
        # password and the time taken does not tell which names exist.
        self._dummy: str | None = None

    def _current(self) -> dict[str, str]:
        try:
            st = self.path.stat()
        except OSError:
            return self._hashes  # gone for a moment (being replaced): keep what we had
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if stamp != self._stamp:
                try:
                    text = self.path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    return self._hashes
                users, _problems = parse(text, str(self.path))
                # A bad line is left out (`filterlang serve --check` names it); the others work.
                self._hashes = {u.name: u.hash for u in users}
                self._stamp = stamp
            return self._hashes

    def check(self, name: str, password: str) -> bool:
        """Whether `password` is the password of `name`. Slow by design: call it in a thread."""
        from argon2.exceptions import InvalidHashError, VerificationError

        known = self._current().get(name.lower())
        if known is None and self._dummy is None:
            self._dummy = hash_password("(no such user)")
        try:
            _hasher().verify(known or self._dummy, password)
        except (VerificationError, InvalidHashError):
            return False
        return known is not None
