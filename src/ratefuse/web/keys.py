"""Key functions: which quota a request counts against.

A :class:`KeyFunction` reads a key from an ASGI ``scope`` and from a WSGI
``environ``, so the same rule works under both middlewares. A key function
returns None when the request has no such key; the limit then falls back to
the key function's ``fallback`` (by default the client address), so leaving
out a header never escapes the limit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Key = str | bytes | int
Scope = Mapping[str, Any]
Environ = Mapping[str, Any]
AsgiKeyOf = Callable[[Scope], Key | None]
WsgiKeyOf = Callable[[Environ], Key | None]

# The key of a request whose client address the server does not know (a
# Unix socket): such requests share one quota rather than escape it.
UNKNOWN_CLIENT = "unknown"


class KeyFunction:
    """`KeyFunction` pairs a key reader for ASGI scopes (``asgi``) with one
    for WSGI environs (``wsgi``); either may be None when a key only makes
    sense under one of them. ``name`` describes it in reprs and errors."""

    __slots__ = ("asgi", "name", "wsgi")

    def __init__(
        self,
        name: str,
        asgi: AsgiKeyOf | None = None,
        wsgi: WsgiKeyOf | None = None,
    ) -> None:
        self.name = name
        self.asgi = asgi
        self.wsgi = wsgi

    def __repr__(self) -> str:
        return f"KeyFunction({self.name!r})"


def _asgi_client(scope: Scope) -> Key:
    client = scope.get("client")
    return client[0] if client else UNKNOWN_CLIENT


def _wsgi_client(environ: Environ) -> Key:
    return environ.get("REMOTE_ADDR") or UNKNOWN_CLIENT


def wsgi_path(environ: Environ) -> str:
    """`wsgi_path` is the request path as text, as ASGI's ``scope["path"]``:
    PEP 3333 gives PATH_INFO as latin-1-decoded bytes, so a non-ASCII path
    is decoded again as UTF-8 (routes and keys then match under both)."""
    path: str = environ.get("PATH_INFO", "")
    if path.isascii():
        return path
    try:
        return path.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return path


CLIENT_ADDRESS = KeyFunction("client_address", _asgi_client, _wsgi_client)
"""`CLIENT_ADDRESS` keys a request by the peer's IP address (ASGI
``scope["client"]``, WSGI ``REMOTE_ADDR``). Behind a proxy this is the
proxy: use :func:`forwarded_for`."""

PATH = KeyFunction("path", lambda scope: scope["path"], wsgi_path)
"""`PATH` keys a request by its path: one quota per URL (not per client)."""


def _with_fallback(
    name: str,
    asgi: AsgiKeyOf,
    wsgi: WsgiKeyOf,
    fallback: KeyFunction | None,
) -> KeyFunction:
    # Wraps the readers so that None becomes the fallback's key.
    if fallback is None:
        return KeyFunction(name, asgi, wsgi)
    asgi_fallback, wsgi_fallback = fallback.asgi, fallback.wsgi
    if asgi_fallback is None or wsgi_fallback is None:
        raise ValueError(
            f"fallback must read both ASGI and WSGI requests, got {fallback!r}"
        )

    def asgi_or_fallback(scope: Scope) -> Key | None:
        key = asgi(scope)
        return asgi_fallback(scope) if key is None else key

    def wsgi_or_fallback(environ: Environ) -> Key | None:
        key = wsgi(environ)
        return wsgi_fallback(environ) if key is None else key

    return KeyFunction(name, asgi_or_fallback, wsgi_or_fallback)


def header(name: str, fallback: KeyFunction | None = CLIENT_ADDRESS) -> KeyFunction:
    """`header` keys a request by the value of the header ``name`` (case
    insensitive; an API key, a tenant id; sent on several lines, the
    values joined with commas). Without the header, the key is
    ``fallback``'s (default: the client address); None means such requests
    are not limited by this limit at all."""
    if not isinstance(name, str) or not name or not name.isascii():
        raise ValueError(f"header name must be a non-empty ASCII str, got {name!r}")
    raw_name = name.lower().encode("ascii")
    environ_name = "HTTP_" + name.upper().replace("-", "_")

    def from_scope(scope: Scope) -> Key | None:
        # Decoded as WSGI decodes it (latin-1), so that an ASGI app and a
        # WSGI app sharing a quota give the same header the same key. A
        # header sent on several lines is one comma-separated list (RFC
        # 9110, 5.3), joined as WSGI servers join it: reading only the
        # first line would let a client's own X-Forwarded-For line win
        # over the one its proxy appended as a line of its own.
        values = [value for field, value in scope["headers"] if field == raw_name]
        if not values:
            return None
        return b",".join(values).decode("latin-1")

    def from_environ(environ: Environ) -> Key | None:
        return environ.get(environ_name)

    return _with_fallback(f"header({name!r})", from_scope, from_environ, fallback)


def forwarded_for(
    trusted_proxies: int = 1, fallback: KeyFunction | None = CLIENT_ADDRESS
) -> KeyFunction:
    """`forwarded_for` keys a request by the client address that the
    ``trusted_proxies`` proxies in front of the app appended to
    ``X-Forwarded-For`` (counted from the right, because everything left of
    them is what the client chose to send). With fewer entries than that,
    the key is ``fallback``'s."""
    if isinstance(trusted_proxies, bool) or not isinstance(trusted_proxies, int):
        raise ValueError(f"trusted_proxies must be an int, got {trusted_proxies!r}")
    if trusted_proxies < 1:
        raise ValueError(f"trusted_proxies must be >= 1, got {trusted_proxies!r}")
    forwarded = header("x-forwarded-for", fallback=None)
    from_scope, from_environ = forwarded.asgi, forwarded.wsgi
    assert from_scope is not None
    assert from_environ is not None

    def pick(value: Key | None) -> Key | None:
        if value is None:
            return None
        hops = str(value).split(",")
        if len(hops) < trusted_proxies:
            return None
        return hops[-trusted_proxies].strip() or None

    return _with_fallback(
        f"forwarded_for({trusted_proxies})",
        lambda scope: pick(from_scope(scope)),
        lambda environ: pick(from_environ(environ)),
        fallback,
    )


def _asgi_user(scope: Scope) -> Key | None:
    # Starlette's AuthenticationMiddleware puts a BaseUser in scope["user"].
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    identity = getattr(user, "identity", None) or getattr(user, "display_name", None)
    return None if identity is None else str(identity)


def _wsgi_user(environ: Environ) -> Key | None:
    return environ.get("REMOTE_USER") or None


def user(fallback: KeyFunction | None = CLIENT_ADDRESS) -> KeyFunction:
    """`user` keys a request by the authenticated user: ASGI
    ``scope["user"]`` (Starlette's AuthenticationMiddleware: its
    ``identity``, else ``display_name``), WSGI ``REMOTE_USER``. Anonymous
    requests get ``fallback``'s key (default: the client address)."""
    return _with_fallback("user", _asgi_user, _wsgi_user, fallback)
