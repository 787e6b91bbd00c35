"""The class's token file: one ``name token`` per line, one line per student.

A token is checked in constant time against every line (:func:`hmac.compare_digest` on
SHA-256 digests), exactly and case-sensitively. Removing a line revokes that token: the app
reads the file again when it changes, and the launcher reloads nginx within a second.
The file must be private (no permission bits for group or others): a token file other
local users can read is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
import sys
from pathlib import Path

NAME_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
# URL-safe base64's alphabet: a token goes verbatim into nginx's config and an HTTP header.
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,256}$")
FORMAT = "one 'name token' per line (name: 1-64 of A-Z a-z 0-9 . _ @ -; token: 20-256 of A-Z a-z 0-9 _ -)"


class TokenFileError(ValueError):
    """The token file is missing, readable by others, or not in FORMAT."""


def new_token() -> str:
    return secrets.token_urlsafe(32)


def create(path: Path, name: str = "teacher") -> None:
    """A new private token file with one random token (never printed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{name} {new_token()}\n")


def read(path: Path) -> dict[str, str]:
    """``{name: token}`` from the file, checked (TokenFileError says what is wrong)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise TokenFileError(f"token file {path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenFileError(f"token file {path} is open to other users (mode {stat.filemode(mode)}): chmod 600 {path}")
    tokens: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2 or not NAME_RE.match(fields[0]) or not TOKEN_RE.match(fields[1]):
            raise TokenFileError(f"{path} line {number}: expected {FORMAT}")
        name, token = fields
        if name in tokens:
            raise TokenFileError(f"{path} line {number}: the name {name!r} is given twice")
        if token in tokens.values():
            raise TokenFileError(f"{path} line {number}: this token is also another name's")
        tokens[name] = token
    if not tokens:
        raise TokenFileError(f"token file {path} holds no token: {FORMAT}")
    return tokens


def digests(tokens: dict[str, str]) -> dict[str, str]:
    """``{name: sha256 hex}``: what the app is given (no token leaves the launcher in clear)."""
    return {name: hashlib.sha256(token.encode()).hexdigest() for name, token in tokens.items()}


def match(authorization: str | None, known: dict[str, str]) -> str | None:
    """The name whose token this ``Authorization`` header carries, else None. Every line is
    compared (no early exit), each in constant time."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme != "Bearer" or not given:
        return None
    digest = hashlib.sha256(given.encode("utf-8", "surrogateescape")).hexdigest()
    found = None
    for name, expected in known.items():
        if hmac.compare_digest(digest, expected):
            found = name
    return found


class Watched:
    """The token file's digests, read again whenever the file changes. A file that has become
    unreadable or wrong keeps the last good list (and says so once); none yet: no token."""

    def __init__(self, path: Path):
        self.path = path
        self._stamp: tuple | None = None
        self._digests: dict[str, str] = {}

    def digests(self) -> dict[str, str]:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if stamp != self._stamp:
                self._stamp = stamp
                self._digests = digests(read(self.path))
        except (OSError, TokenFileError) as err:
            print(f"token file not reloaded, the previous tokens stay: {err}", file=sys.stderr, flush=True)
        return self._digests
