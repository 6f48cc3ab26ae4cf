"""What a config source is: a store of versioned documents (the TOML a
file would hold) that a fleet's processes follow.

A `ConfigStore` holds one document and its version, written only by
compare-and-set, and the versions the fleet's processes acknowledged; a
`ConfigSource` delivers the store's documents to a callback as they change.
`ratefuse.config.ConfigFollower` applies what a source delivers to a
Registry.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

# DEFAULT_ACK_TTL is how long (seconds) a process's acknowledgement outlives
# its last refresh; a process refreshes it every third of that, so a dead
# one drops out of `ratefuse config status` within this time.
DEFAULT_ACK_TTL: Final = 30.0
# DEFAULT_RETRY_INTERVAL is how long (seconds) a source waits before it
# reconnects to a store it lost.
DEFAULT_RETRY_INTERVAL: Final = 0.5


@dataclass(frozen=True)
class ConfigDocument:
    """`ConfigDocument` is one version of a configuration: ``text`` (TOML,
    the schema of ``Registry.from_toml``) numbered ``version`` by its store
    (a larger number is newer; versions start above 0)."""

    version: int
    text: bytes


@dataclass(frozen=True)
class Acknowledgement:
    """`Acknowledgement` is a process (``member``, by default
    ``host:pid``) reporting the ``version`` it runs; ``expires_in`` is the
    seconds left before it drops out unless refreshed."""

    member: str
    version: int
    expires_in: float


class VersionConflictError(RuntimeError):
    """`VersionConflictError` refuses a write made against ``expected``
    when the store holds ``current``: someone pushed in between, so the
    push would overwrite a version it was not validated against."""

    def __init__(self, expected: int, current: int) -> None:
        self.expected = expected
        self.current = current
        super().__init__(
            f"the store holds version {current}, not the {expected} this push "
            "was checked against: someone pushed in between; read it and "
            "push again"
        )


class StoreError(RuntimeError):
    """`StoreError` is a store that could not be reached or answered an
    error; its message names the store."""


Deliver = Callable[[ConfigDocument], "int | None"]


class ConfigStore(Protocol):
    """`ConfigStore` is where a fleet's configuration lives."""

    def read(self) -> ConfigDocument | None:
        """`read` is the document in the store, None if there is none."""
        ...

    def write(self, text: bytes, expected_version: int) -> int:
        """`write` stores ``text`` if the store still holds
        ``expected_version`` (0: no document) and returns its new version;
        else raises VersionConflictError."""
        ...

    def acknowledgements(self) -> list[Acknowledgement]:
        """`acknowledgements` are the live processes' reports, by member."""
        ...

    def close(self) -> None:
        """`close` releases the store's connections."""
        ...


class ConfigSource(Protocol):
    """`ConfigSource` delivers a store's documents as they change.

    `start` starts a thread that calls ``deliver`` with the store's
    document at once, again after every change and after every reconnect
    (so a missed notification only delays a version); it may deliver a
    version more than once, or an older one after a newer. ``deliver``
    returns the version the process runs, which the source acknowledges
    in the store until `close`.
    """

    def start(self, deliver: Deliver) -> None:
        """`start` starts following the store (once)."""
        ...

    def close(self) -> None:
        """`close` stops following, drops this process's acknowledgement
        and waits for the thread to end."""
        ...

    def describe(self) -> str:
        """`describe` names the source in logs and errors."""
        ...


def default_member() -> str:
    """`default_member` names this process in acknowledgements:
    ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def check_member(member: str) -> str:
    """`check_member` returns ``member`` or raises ValueError naming it: a
    non-empty name without ``/``, ``*`` or whitespace, at most 200 chars."""
    if (
        not isinstance(member, str)
        or not 0 < len(member) <= 200
        or any(char in member for char in "/*?[] \t\n")
    ):
        raise ValueError(
            "member must be 1-200 characters without /, *, ?, [, ] or "
            f"whitespace, got {member!r}"
        )
    return member


def check_seconds(name: str, value: float, minimum: float) -> float:
    """`check_seconds` returns ``value`` as float seconds or raises
    ValueError naming ``name`` when it is not a number >= ``minimum``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not minimum <= value < float("inf")
    ):
        raise ValueError(f"{name} must be seconds >= {minimum:g}, got {value!r}")
    return float(value)
