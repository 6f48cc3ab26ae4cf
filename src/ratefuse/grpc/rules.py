"""`MethodRule`: which limits and which bulkhead apply to which gRPC methods.

A rule names methods by their full name, ``/pkg.Service/Method``; ``*``
matches any run of characters within one part (``/pkg.Service/*``: every
method of the service; ``/pkg.*/Get*``). The limits are the web
middleware's :class:`ratefuse.web.Limit` (a limiter, a key, a cost, a
name), decided in order as there (:mod:`ratefuse.ordered`); their keys
are :class:`ratefuse.grpc.keys.CallKey` objects or plain callables of
the server context.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from ratefuse.adaptive import AdaptiveLimiter
from ratefuse.bulkhead import Bulkhead
from ratefuse.web.keys import KeyFunction
from ratefuse.web.rules import Limit, Route, Router

DEFAULT_MAX_WAIT = 0.0
_METHOD_PATTERN = re.compile(r"/[^/]+/[^/]+")


def method_regex(pattern: str) -> str:
    """`method_regex` is the regular expression of a method pattern: ``*``
    stays within the service or the method part, the rest is literal."""
    if not isinstance(pattern, str) or not _METHOD_PATTERN.fullmatch(pattern):
        raise ValueError(
            f"pattern must be a full method name /package.Service/Method "
            f"(with * wildcards), got {pattern!r}"
        )
    return "[^/]*".join(re.escape(piece) for piece in pattern.split("*"))


class MethodRule:
    """`MethodRule` applies ``limits`` and a bulkhead to the methods whose
    full name matches ``pattern`` (see the module).

    ``limits`` (:class:`ratefuse.web.Limit`) must all admit a call and are
    tried in order, as on a web route; a key of None is the peer's address.
    ``bulkhead``: an int gives each matched method its own
    :class:`ratefuse.Bulkhead` of that many concurrent calls; a Bulkhead
    or an :class:`ratefuse.AdaptiveLimiter` is shared by every method the
    rule matches (an adaptive limit measures each call's latency, and a
    call that ends with an exception, aborts included, is a drop); None:
    no concurrency limit. ``max_wait`` (seconds, >= 0; 0: refuse at once) is how long a
    denied call may wait for its limits, always within the call's
    deadline. ``per_message``: a request-streaming call is admitted for
    each message it sends instead of once at its start. A rule with no
    limits and no bulkhead exempts its methods.
    """

    __slots__ = ("bulkhead", "limits", "max_wait", "pattern", "per_message", "regex")

    def __init__(
        self,
        pattern: str,
        limits: Limit | Sequence[Limit] = (),
        *,
        bulkhead: int | Bulkhead | AdaptiveLimiter | None = None,
        max_wait: float = DEFAULT_MAX_WAIT,
        per_message: bool = False,
    ) -> None:
        self.regex = method_regex(pattern)
        limits = (limits,) if isinstance(limits, Limit) else tuple(limits)
        for limit in limits:
            if not isinstance(limit, Limit):
                raise ValueError(f"limits must be Limit objects, got {limit!r}")
            if isinstance(limit.key, KeyFunction):
                raise ValueError(
                    f"{limit.key!r} reads HTTP requests; a gRPC limit needs a "
                    f"ratefuse.grpc CallKey (peer, metadata(...), method)"
                )
        names = [limit.name for limit in limits]
        if len(set(names)) != len(names):
            raise ValueError(
                f"limit names must be unique within a rule (pass name=), "
                f"got {names!r} for {pattern!r}"
            )
        if bulkhead is not None and not isinstance(
            bulkhead, (Bulkhead, AdaptiveLimiter)
        ):
            if isinstance(bulkhead, bool) or not isinstance(bulkhead, int):
                raise ValueError(
                    "bulkhead must be an int, a Bulkhead, an AdaptiveLimiter "
                    f"or None, got {bulkhead!r}"
                )
            if bulkhead < 1:
                raise ValueError(f"bulkhead must be >= 1, got {bulkhead!r}")
        if (
            isinstance(max_wait, bool)
            or not isinstance(max_wait, (int, float))
            or not 0 <= max_wait <= math.inf
        ):
            raise ValueError(f"max_wait must be seconds >= 0, got {max_wait!r}")
        self.pattern = pattern
        self.limits = limits
        self.bulkhead = bulkhead
        self.max_wait = float(max_wait)
        self.per_message = bool(per_message)

    def __repr__(self) -> str:
        return f"MethodRule({self.pattern!r}, limits={self.limits!r})"


def method_router(rules: Sequence[MethodRule]) -> Router[MethodRule]:
    """`method_router` finds the first rule matching a full method name, in
    one regular-expression match (the web middleware's router)."""
    for rule in rules:
        if not isinstance(rule, MethodRule):
            raise ValueError(f"rules must be MethodRule objects, got {rule!r}")
    routes = [Route(rule.regex, match="regex") for rule in rules]
    return Router(routes, rules)
