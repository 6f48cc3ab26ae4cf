"""`Limit` and `Route`: what the middlewares enforce, and on which paths.

Both are validated at construction; the middlewares compile a list of
routes once (:class:`Router`: one regular expression for all patterns,
first match wins) so that a request costs one match and one decision per
limit.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from typing import Any, Generic, Literal, TypeVar

from ratefuse.adaptive import AdaptiveLimiter
from ratefuse.ordered import check_cost, check_limiter
from ratefuse.web.concurrency import check_concurrency
from ratefuse.web.keys import KeyFunction, header

T = TypeVar("T")
MatchKind = Literal["exact", "prefix", "glob", "regex"]
MATCH_KINDS: tuple[MatchKind, ...] = ("exact", "prefix", "glob", "regex")
DEFAULT_POLICY_NAME = "default"
_GLOB_CHARACTERS = frozenset("*?[")
_POLICY_NAME = re.compile(r"[\x20-\x7e]+")


class Limit:
    """`Limit` is one quota a request must pass.

    ``limiter`` is a :class:`ratefuse.protocols.RateLimiter` or
    AsyncRateLimiter (one quota for every request of the route: a
    :class:`ratefuse.Limiter`, local or on a backend), a KeyedRateLimiter or
    AsyncKeyedRateLimiter (one quota per key: a
    :class:`ratefuse.KeyedLimiter`, ``ratefuse.redis.RedisLimiter``, ...),
    or the name of one in the middleware's ``registry``. ``key`` (for
    keyed limiters; None: the client address) is a :class:`KeyFunction` or
    a plain callable of the ASGI scope / WSGI environ. ``cost`` (int >= 0)
    is what one request takes (nothing once a limit listed before this one
    on the route has denied it: see :class:`Route`). ``name`` names the
    policy in the ``RateLimit`` headers (unique within a route). ``rates``
    describes the quota in ``RateLimit-Policy``; None takes
    ``limiter.rates``.
    """

    __slots__ = ("cost", "key", "limiter", "name", "rates")

    def __init__(
        self,
        limiter: object,
        *,
        key: KeyFunction | Callable[..., object] | None = None,
        cost: int = 1,
        name: str = DEFAULT_POLICY_NAME,
        rates: Sequence[Any] | None = None,
    ) -> None:
        check_cost(cost)
        if (
            not isinstance(name, str)
            or not _POLICY_NAME.fullmatch(name)
            or ('"' in name or "\\" in name)
        ):
            raise ValueError(
                f"name must be printable ASCII without quotes, got {name!r}"
            )
        if key is not None and not callable(key) and not isinstance(key, KeyFunction):
            raise ValueError(f"key must be a KeyFunction or callable, got {key!r}")
        if not isinstance(limiter, str):
            check_limiter(limiter, key)
        self.limiter = limiter
        self.key = key
        self.cost = cost
        self.name = name
        self.rates = rates

    def __repr__(self) -> str:
        return f"Limit({self.limiter!r}, key={self.key!r}, name={self.name!r})"


def priority_reader(
    priority: str | KeyFunction | Callable[[Any], object] | None,
) -> KeyFunction | Callable[[Any], object] | None:
    """`priority_reader` is a Route's ``priority`` option as a reader: a
    header name becomes that header's KeyFunction (no fallback)."""
    if priority is None or isinstance(priority, KeyFunction):
        return priority
    if isinstance(priority, str):
        return header(priority, fallback=None)
    if not callable(priority):
        raise ValueError(
            f"priority must be a header name, a KeyFunction or callable, "
            f"got {priority!r}"
        )
    return priority


def _pattern_regex(pattern: str, match: MatchKind) -> str:
    if match == "exact":
        return re.escape(pattern)
    if match == "prefix":
        return re.escape(pattern) + ".*"
    if match == "regex":
        # A bad regex is this route's error, not the union's; so is one that
        # only works alone (global flags such as "(?i)" must start the
        # whole expression, which the union's does not).
        re.compile(pattern)
        regex = f"(?:{pattern})"
        re.compile(f"(?:x)|{regex}")
        return regex
    # glob: "*" stays within one path segment, "**" crosses segments.
    parts = []
    for piece in re.split(r"(\*\*|\*)", pattern):
        if piece == "**":
            parts.append(".*")
        elif piece == "*":
            parts.append("[^/]*")
        elif piece:
            parts.append(fnmatch.translate(piece)[4:-3])
    return "".join(parts)


class Route:
    """`Route` applies ``limits`` to the requests whose path matches
    ``pattern`` (and whose method is in ``methods``; None: any).

    ``limits`` must all admit a request and are tried in the order given:
    each takes its cost until one denies, and the ones after it are only
    asked (cost 0, consuming nothing) for the headers. List the most
    specific first (per key, then per route or site-wide), so that a client
    denied by its own limit does not use up a quota others share.

    ``match``: "exact", "prefix", "glob" (``*`` within one path segment,
    ``**`` across, ``?`` and ``[...]`` as in fnmatch) or "regex" (the whole
    path must match); None means glob when the pattern has ``*?[``, else
    exact. A route with no limits exempts its paths. Regex patterns may not
    use numbered backreferences (all routes compile into one expression).
    ``priority`` (None: none) reads a request's priority for the limits
    that shed by priority (:class:`ratefuse.shedding.PriorityLimiter`): a
    header name, a :class:`KeyFunction` or a callable of the ASGI scope /
    WSGI environ, its value parsed by
    :func:`ratefuse.shedding.parse_priority` (missing: DEFAULT).
    ``concurrency`` (an :class:`ratefuse.AdaptiveLimiter`; None: none) runs
    the app of the requests the limits admit under that adaptive
    concurrency limit (:mod:`ratefuse.web.concurrency`): 503 without a slot.
    """

    __slots__ = (
        "concurrency",
        "limits",
        "match",
        "methods",
        "pattern",
        "priority",
        "regex",
    )

    def __init__(
        self,
        pattern: str,
        limits: Limit | Sequence[Limit] = (),
        *,
        match: MatchKind | None = None,
        methods: Sequence[str] | None = None,
        priority: str | KeyFunction | Callable[[Any], object] | None = None,
        concurrency: AdaptiveLimiter | None = None,
    ) -> None:
        if not isinstance(pattern, str):
            raise ValueError(f"pattern must be a str, got {pattern!r}")
        if match is None:
            match = "glob" if _GLOB_CHARACTERS & set(pattern) else "exact"
        if match not in MATCH_KINDS:
            raise ValueError(f"match must be one of {MATCH_KINDS}, got {match!r}")
        limits = (limits,) if isinstance(limits, Limit) else tuple(limits)
        for limit in limits:
            if not isinstance(limit, Limit):
                raise ValueError(f"limits must be Limit objects, got {limit!r}")
        names = [limit.name for limit in limits]
        if len(set(names)) != len(names):
            raise ValueError(
                f"limit names must be unique within a route (pass name=), "
                f"got {names!r} for {pattern!r}"
            )
        if methods is not None:
            if isinstance(methods, str) or not all(
                isinstance(method, str) and method.isalpha() for method in methods
            ):
                raise ValueError(
                    f"methods must be a sequence of method names, got {methods!r}"
                )
            methods = tuple(method.upper() for method in methods)
        try:
            self.regex = _pattern_regex(pattern, match)
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a regex: {exc}") from exc
        self.pattern = pattern
        self.match = match
        self.limits = limits
        self.methods = methods
        self.priority = priority_reader(priority)
        self.concurrency = check_concurrency(concurrency)

    def __repr__(self) -> str:
        return f"Route({self.pattern!r}, match={self.match!r}, limits={self.limits!r})"


class Router(Generic[T]):
    """`Router` finds the first route matching a request, in one regular
    expression match (each route is a named alternative, tried in order).
    With method filters, the subject is ``"METHOD path"``."""

    __slots__ = ("_fullmatch", "_with_method", "targets")

    def __init__(self, routes: Sequence[Route], targets: Sequence[T]) -> None:
        self.targets = {f"_rf{index}": target for index, target in enumerate(targets)}
        self._with_method = any(route.methods is not None for route in routes)
        alternatives = []
        for index, route in enumerate(routes):
            regex = route.regex
            if self._with_method:
                methods = "|".join(route.methods or ()) or "[^ ]*"
                regex = f"(?:{methods}) {regex}"
            alternatives.append(f"(?P<_rf{index}>{regex})")
        union = "|".join(alternatives) or "(?!)"
        self._fullmatch = re.compile(union, re.DOTALL).fullmatch

    def find(self, method: str, path: str) -> T | None:
        """`find` returns the target of the first route matching, or None."""
        found = self._fullmatch(f"{method} {path}" if self._with_method else path)
        return None if found is None else self.targets[found.lastgroup]  # type: ignore[index]
