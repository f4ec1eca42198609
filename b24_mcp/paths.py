"""Where b24-mcp keeps its files (the OAuth token file and its lock), and the check that no other user could
swap them: ssh's rule for keys, applied before the first token is ever written."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigError
from .logs import fingerprint


def default_token_file(portal_host: str, client_id: str) -> Path:
    """One file per portal and application, in the user's data directory."""
    import platformdirs  # only OAuth users pay for it, and only on first use

    safe_host = re.sub(r"[^A-Za-z0-9.-]", "_", portal_host)
    return platformdirs.user_data_path("b24-mcp") / f"oauth-{safe_host}-{fingerprint(client_id)[:12]}.json"


def default_journal_file(portal_host: str, bot_id: int | None) -> Path:
    """The journal of one bot on one portal (its event queue is the bot's), beside the token files."""
    import platformdirs

    safe_host = re.sub(r"[^A-Za-z0-9.-]", "_", portal_host)
    return platformdirs.user_data_path("b24-mcp") / f"journal-{safe_host}-bot{bot_id or 0}.sqlite3"


def lock_file_of(token_file: Path) -> Path:
    """The lock beside the token file. An OS lock on it is what counts, not its existence: it stays in place."""
    return token_file.with_name(f"{token_file.name}.lock")


def check_token_path(path: Path, setting: str = "B24_TOKEN_FILE") -> None:
    """Refuse, in one ConfigError line, a token file (or the journal: `setting`) that other users could swap: ssh's
    rule for keys.

    Whoever can replace the file or its lock can feed b24-mcp tokens of their choosing, or hold the lock forever;
    whoever owns it reads the refresh token. So the file's directory (or, before it exists, its nearest existing
    ancestor, under which it will be made 0700) must not be writable by group or others unless the sticky bit is
    set, and the directory, an existing token file and an existing lock file must belong to this user.
    """
    getuid = getattr(os, "getuid", None)
    if getuid is None:  # Windows: access is a matter of ACLs, not of mode bits and owners
        return
    uid = getuid()
    path = path.absolute()

    def refused(why: str, fix: str = "set") -> ConfigError:
        return ConfigError(
            f"{setting} {path} is not in a safe place: {why}; {fix} {setting} to a file in a directory "
            "that only you can write to"
        )

    directory = existing = path.parent
    while True:
        try:
            st = existing.stat()
            break
        except FileNotFoundError:
            if existing.parent == existing:
                return
            existing = existing.parent
        except OSError as exc:
            raise refused(f"{existing} cannot be checked ({os_reason(exc)})") from None
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
        raise refused(
            f"other users can write to {existing} (mode {mode:04o}, no sticky bit) and could replace the file",
            f"run chmod go-w {existing}, or set",
        )
    if existing == directory and st.st_uid != uid:
        raise refused(f"the directory belongs to another user (uid {st.st_uid}; this is uid {uid})")
    for what, file in (("the token file", path), ("its lock file", lock_file_of(path))):
        try:
            owner = file.stat().st_uid
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise refused(f"{what} {file} cannot be checked ({os_reason(exc)})") from None
        if owner != uid:
            raise refused(f"{what} {file} belongs to another user (uid {owner}; this is uid {uid})")


def os_reason(exc: BaseException) -> str:
    """An OS error in words, without its filename (the caller names the file)."""
    return (exc.strerror if isinstance(exc, OSError) else None) or type(exc).__name__


def check_ca(env: Mapping[str, str], *, load: bool = False) -> None:
    """SSL_CERT_FILE (or SSL_CERT_DIR) as httpx will read it, checked now rather than at the first call.

    At start-up the file is only read and looked at (a PEM certificate in it): parsing a whole system bundle
    takes tens of milliseconds, which httpx spends anyway, off the start-up path. `load=True` (the doctor)
    parses it as httpx will."""
    cafile = env.get("SSL_CERT_FILE", "")
    if cafile:
        path = Path(cafile)
        where = "" if path.is_absolute() else " (a relative path depends on the directory the host starts in)"
        fix = "point it to your CA's PEM file with an absolute path, or unset it"
        if not path.exists():
            raise ConfigError(f"SSL_CERT_FILE={cafile!r} does not exist{where}; {fix}")
        if not path.is_file():
            raise ConfigError(f"SSL_CERT_FILE={cafile!r} is not a file; {fix}")
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"SSL_CERT_FILE={cafile!r} cannot be read ({exc.strerror}); {fix}") from None
        if not re.search(rb"-----BEGIN (?:TRUSTED )?CERTIFICATE-----", pem):
            raise ConfigError(f"SSL_CERT_FILE={cafile!r} holds no PEM certificate (-----BEGIN CERTIFICATE-----); {fix}")
        if load:
            import ssl

            try:
                ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"SSL_CERT_FILE={cafile!r} could not be loaded as a CA bundle ({type(exc).__name__}); {fix}"
                ) from None
        return
    capath = env.get("SSL_CERT_DIR", "")
    if capath and not Path(capath).is_dir():
        raise ConfigError(
            f"SSL_CERT_DIR={capath!r} is not a directory; point it to a directory of CA files, or unset it"
        )


def token_path(raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_absolute():
        raise ConfigError(
            f"B24_TOKEN_FILE={raw!r} is a relative path, which would depend on the directory the host starts the "
            "server in; expected an absolute path to a file"
        )
    return path


def check_token_file(path: Path, *, explicit: bool) -> None:
    """The token file can be read and written (or created) by this user, in a place no one else can swap it."""
    import os

    name = (
        f"B24_TOKEN_FILE={str(path)!r}" if explicit else f"The OAuth token file {path} (set B24_TOKEN_FILE to move it)"
    )
    if path.is_dir():
        raise ConfigError(f"{name} is a directory; expected a file path")
    if path.exists():
        if not path.is_file():
            raise ConfigError(f"{name} is not a regular file; expected a file path")
        if not os.access(path, os.R_OK | os.W_OK):
            raise ConfigError(f"{name} cannot be read and written by this user; fix its permissions or choose another")
        if not os.access(path.parent, os.W_OK | os.X_OK):  # a renewed pair is saved by a rename in the directory
            raise ConfigError(
                f"{name} is in a directory this user may not write to ({path.parent}), so a renewed token pair "
                "could not be saved; make the directory writable, or choose a file in a directory you own"
            )
    else:
        existing = path.parent
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not existing.is_dir():
            raise ConfigError(f"{name} cannot be created: {existing} is a file, not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(
                f"{name} cannot be created: this user may not write to {existing}; create the directory, or choose "
                "a file in a directory you own"
            )

    check_token_path(path)


# --- all of it at once ------------------------------------------------------------------------------------------
