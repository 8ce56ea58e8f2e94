"""An exclusive lock on an output folder: one lock file holding its owner's pid and host.

Stdlib only (the lock tests load this file in a bare subprocess). The lock file is written
completely under a temporary name and then hard-linked to ``.tf_clrp.lock``: ``os.link``
fails if the name exists, so taking the lock is atomic and a lock file is never half written.
A lock whose host is this machine and whose pid no longer runs is stale and is taken over;
a lock from another host cannot be checked and is never taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

LOCK = ".tf_clrp.lock"
#: Tokens of the locks this process holds (a lock with this pid but another token was left
#: by an earlier process that had the same pid, e.g. in a restarted container: stale).
_HELD: set[str] = set()


class LockHeld(Exception):
    """The folder is locked by a live (or uncheckable) owner.

    Args:
        path: The lock file.
        owner: Its parsed content (pid, host, started), possibly empty.
        reason: Why the lock is taken to be held.
    """

    def __init__(self, path: Path, owner: dict[str, Any], reason: str) -> None:
        self.path, self.owner, self.reason = path, owner, reason
        super().__init__(f"{path}: {reason}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OSError:
        return True
    return True


def _read_owner(path: Path) -> dict[str, Any] | None:
    """The lock's content, {} if unreadable, None if the lock vanished meanwhile."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        owner = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return owner if isinstance(owner, dict) else {}


def _held_reason(owner: dict[str, Any]) -> str | None:
    """Why ``owner`` still holds the lock, or None if the lock is stale."""
    pid, host = owner.get("pid"), owner.get("host")
    if not isinstance(pid, int) or not isinstance(host, str):
        return "the lock file is unreadable (not written by this tf_clrp version)"
    if host != socket.gethostname():
        return (
            f"held by pid {pid} on host {host!r}, which cannot be checked from "
            f"{socket.gethostname()!r}"
        )
    if pid == os.getpid():
        if owner.get("token") not in _HELD:
            return None
        return f"held by this process (pid {pid}): another explain_dataset call is writing"
    if _pid_alive(pid):
        return f"held by the running process {pid} on this host"
    return None


class FolderLock:
    """The lock on one folder, taken by ``acquire`` and given back by ``release``."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK
        self.token = ""

    def acquire(self) -> None:
        """Takes the lock, replacing a stale one.

        Raises:
            LockHeld: another live owner (or one on another host) holds it.
        """
        self.token = f"{os.getpid()}-{time.time_ns()}"
        content = json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "token": self.token,
            }
        )
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f"{LOCK}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(content)
            for _ in range(3):
                try:
                    _link_or_create(tmp, self.path, content)
                    _HELD.add(self.token)
                    return
                except FileExistsError:
                    owner = _read_owner(self.path)
                    if owner is None:  # released meanwhile: try again
                        continue
                    reason = _held_reason(owner)
                    if reason is not None:
                        raise LockHeld(self.path, owner, reason) from None
                    self._remove_stale(owner)
            raise LockHeld(self.path, {}, "the lock changed hands repeatedly while taking it")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _remove_stale(self, owner: dict[str, Any]) -> None:
        """Removes the stale lock of ``owner`` unless someone replaced it meanwhile."""
        current = _read_owner(self.path)
        if current is not None and current.get("token") == owner.get("token"):
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def release(self) -> None:
        """Gives the lock back (only if it is still this holder's)."""
        _HELD.discard(self.token)
        owner = _read_owner(self.path)
        if owner is not None and owner.get("token") == self.token:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def _link_or_create(tmp: str, path: Path, content: str) -> None:
    """Creates ``path`` with ``content`` atomically; FileExistsError if it exists.

    A hard link of the complete temporary file where the file system allows it, else an
    exclusive create (``O_EXCL``) followed by the write.
    """
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise
    except OSError:  # no hard links here (some network / FUSE file systems)
        pass
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(content)
