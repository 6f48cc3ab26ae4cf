"""What both middlewares do with a matched route: decide its limits in
order, then say whether to deny and which headers to send.

Several limits on one route must all admit, and they are tried in the
order listed: each takes its cost until one denies; from then on the
remaining limits are asked with cost 0 (every ratefuse limiter answers
cost 0 without consuming), so the headers still describe them all but a
denied request does not use up their quota. List the most specific limit
(per key) first and the shared ones (per route, site-wide) after it: a
client denied by its own limit then never drains the quota everyone
shares. The limits before the one that denies have taken their cost. The
429 reports the longest retry among the denials seen: the denial, and any
cost-0 verdict after it that reports a wait.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from math import ceil, inf
from typing import Any, Generic, Literal, TypeVar

from ratefuse.adaptive import AdaptiveLimiter
from ratefuse.ordered import AskByKey, resolve_limiter
from ratefuse.protocols import is_async, is_keyed
from ratefuse.web.concurrency import under_concurrency
from ratefuse.web.deadlines import DeadlineFrom, deadline_reader, with_deadline
from ratefuse.web.headers import (
    DEFAULT_HEADER_MODE,
    DEFAULT_HEADERS_ON,
    HEADER_MODES,
    HEADERS_ON,
    HeaderMode,
    HeadersOn,
    legacy_headers,
    policy_items,
    whole_seconds,
)
from ratefuse.web.keys import CLIENT_ADDRESS, KeyFunction
from ratefuse.web.rules import Limit, Route, Router

Side = Literal["asgi", "wsgi"]
App = TypeVar("App")
Request = TypeVar("Request")
Header = TypeVar("Header")
INF = inf
DEFAULT_DENIED_BODY = b"Too Many Requests\n"


class CompiledLimit(AskByKey):
    """`CompiledLimit` is a :class:`Limit` resolved for one middleware: the
    bound decide method, the key reader for its request type, and the
    names its headers use."""

    __slots__ = (
        "cost",
        "decide",
        "is_async",
        "key_of",
        "name",
        "policy",
        "prefix",
        "prefix_by_capacity",
        "rates_seen",
        "raw_prefix",
        "raw_prefix_by_capacity",
        "tracked",
    )

    def __init__(
        self,
        limit: Limit,
        side: Side,
        registry: object | None,
        priority: object | None = None,
    ) -> None:
        limiter = resolve_limiter(limit.limiter, limit.key, registry)
        self.decide: Callable[..., Any] = limiter.decide
        self.is_async = is_async(limiter)
        if self.is_async and side == "wsgi":
            raise TypeError(
                f"limiter {limiter!r} is async; a WSGI app needs a sync limiter"
            )
        self.key_of = _key_reader(limit.key, side) if is_keyed(limiter) else None
        decide_at = getattr(limiter, "decide_at", None)
        if priority is not None and callable(decide_at):
            # A limiter that sheds by priority takes the route's priority
            # reader as its key (never None: a missing priority is "").
            self.key_of = _priority_reader(priority, side)
            self.decide = decide_at
        self.cost = limit.cost
        self.name = limit.name
        # A limiter from a hot-reloading registry may change its rates;
        # then the headers describing them are rendered again (see
        # `RoutePolicy.refresh`). Explicit ``rates`` are fixed.
        tracks = limit.rates is None and hasattr(limiter, "rates")
        self.tracked: Any = limiter if tracks else None
        self.describe(limiter.rates if tracks else limit.rates or ())

    def describe(self, rates: Any) -> None:
        """`describe` renders the header parts of ``rates``."""
        self.rates_seen = rates
        items = policy_items(self.name, rates)
        self.policy = ", ".join(rendered for _, _, rendered in items)
        # The decision reports the capacity that applied, which names the
        # item; the RateLimit member is rendered from this prefix.
        self.prefix_by_capacity = {
            capacity: f'"{item}";r=' for item, capacity, _ in reversed(items)
        }
        self.prefix = f'"{self.name}";r='
        self.raw_prefix_by_capacity = {
            capacity: prefix.encode()
            for capacity, prefix in self.prefix_by_capacity.items()
        }
        self.raw_prefix = self.prefix.encode()

    def rate_item(self, decision: Any) -> str:
        """`rate_item` renders this limit's member of the RateLimit field."""
        prefix = self.prefix_by_capacity.get(decision.limit, self.prefix)
        reset_after = decision.reset_after
        if reset_after < INF:
            return f"{prefix}{decision.remaining};t={ceil(reset_after)}"
        return f"{prefix}{decision.remaining}"

    def raw_rate_header(self, decision: Any) -> tuple[bytes, bytes]:
        """`raw_rate_header` is the ASGI RateLimit header of this limit
        alone: `rate_item` without going through text."""
        prefix = self.raw_prefix_by_capacity.get(decision.limit, self.raw_prefix)
        reset_after = decision.reset_after
        if reset_after < INF:
            return (
                b"ratelimit",
                b"%s%d;t=%d" % (prefix, decision.remaining, ceil(reset_after)),
            )
        return (b"ratelimit", b"%s%d" % (prefix, decision.remaining))


def _key_reader(key: object, side: Side) -> Callable[[Any], Any]:
    if key is None:
        key = CLIENT_ADDRESS
    if isinstance(key, KeyFunction):
        reader = key.asgi if side == "asgi" else key.wsgi
        if reader is None:
            raise ValueError(f"key {key!r} cannot read {side.upper()} requests")
        return reader
    return key  # type: ignore[return-value]


def _priority_reader(priority: object, side: Side) -> Callable[[Any], Any]:
    read = _key_reader(priority, side)

    def priority_of(request: Any) -> Any:
        value = read(request)
        return "" if value is None else value

    return priority_of


class RoutePolicy:
    """`RoutePolicy` is a route's compiled limits and its static headers
    (``static_headers`` as text, ``static_raw`` as ASGI bytes);
    ``headers_on_admitted`` is whether admitted responses carry
    headers too; ``app`` is what the admitted requests go to (the
    middleware's app, under the route's ``concurrency`` limit if any)."""

    __slots__ = (
        "app",
        "concurrency",
        "draft",
        "headers_on_admitted",
        "legacy",
        "limits",
        "single",
        "static_headers",
        "static_raw",
        "tracked",
    )

    def __init__(
        self,
        limits: Sequence[CompiledLimit],
        mode: HeaderMode,
        headers_on: HeadersOn,
        concurrency: AdaptiveLimiter | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.app: Any = None
        self.limits = tuple(limits)
        self.draft = mode in ("draft", "both")
        self.legacy = mode in ("legacy", "both")
        self.headers_on_admitted = headers_on == "all" and mode != "none"
        # The common case has its own short path: one sync limit, and the
        # draft headers or none.
        self.single = (
            limits[0]
            if len(limits) == 1 and not limits[0].is_async and not self.legacy
            else None
        )
        self.tracked = tuple(limit for limit in limits if limit.tracked is not None)
        self._render()

    def _render(self) -> None:
        policy = ", ".join(limit.policy for limit in self.limits if limit.policy)
        self.static_headers: list[tuple[str, str]] = (
            [("RateLimit-Policy", policy)] if policy and self.draft else []
        )
        self.static_raw = [
            (name.lower().encode(), value.encode())
            for name, value in self.static_headers
        ]

    def refresh(self) -> None:
        """`refresh` renders the headers again if a limiter's rates changed
        (a registry update); the check is an identity test per limit."""
        changed = False
        for limit in self.tracked:
            rates = limit.tracked.rates
            if rates is not limit.rates_seen:
                limit.describe(rates)
                changed = True
        if changed:
            self._render()

    def headers(self, outcome: Outcome, retry: bool = True) -> list[tuple[str, str]]:
        """`headers` are the response headers of ``outcome``, as text;
        ``retry=False`` leaves out Retry-After (shadow mode's responses)."""
        headers = list(self.static_headers)
        if outcome.rate is not None and self.draft:
            headers.append(("RateLimit", outcome.rate))
        reporting = outcome.reporting
        if reporting is not None and self.legacy:
            headers += legacy_headers(
                reporting.limit, reporting.remaining, reporting.reset_after
            )
        if retry and outcome.retry_after is not None:
            headers.append(("Retry-After", str(outcome.retry_after)))
        return headers

    def raw_headers(
        self, outcome: Outcome, retry: bool = True
    ) -> list[tuple[bytes, bytes]]:
        """`raw_headers` are `headers` for ASGI: lower-case bytes."""
        if self.legacy:
            return [
                (name.lower().encode(), value.encode())
                for name, value in self.headers(outcome, retry)
            ]
        # The common case, without the generic encoding.
        headers = self.static_raw.copy()
        if outcome.rate is not None and self.draft:
            headers.append((b"ratelimit", outcome.rate.encode()))
        if retry and outcome.retry_after is not None:
            headers.append((b"retry-after", b"%d" % outcome.retry_after))
        return headers


def compile_routes(
    routes: Sequence[Route],
    exempt_paths: Sequence[str],
    side: Side,
    mode: HeaderMode,
    headers_on: HeadersOn,
    registry: object | None,
) -> Router[RoutePolicy | None]:
    """`compile_routes` builds the router of a middleware; exempt paths
    match first, as routes without limits."""
    if mode not in HEADER_MODES:
        raise ValueError(f"headers must be one of {HEADER_MODES}, got {mode!r}")
    if headers_on not in HEADERS_ON:
        raise ValueError(f"headers_on must be one of {HEADERS_ON}, got {headers_on!r}")
    if isinstance(exempt_paths, str):
        raise ValueError(
            f"exempt_paths must be a sequence of paths, got {exempt_paths!r}"
        )
    routes = [Route(path, (), match="exact") for path in exempt_paths] + list(routes)
    for route in routes:
        if not isinstance(route, Route):
            raise ValueError(f"routes must be Route objects, got {route!r}")
    targets = [
        RoutePolicy(
            [
                CompiledLimit(limit, side, registry, route.priority)
                for limit in route.limits
            ],
            mode,
            headers_on,
            route.concurrency,
        )
        if route.limits or route.concurrency is not None
        else None
        for route in routes
    ]
    return Router(routes, targets)


@dataclass(slots=True, eq=False)
class Outcome:
    """`Outcome` is what to answer a request: ``denied``; ``retry_after``,
    the longest wait among the denials seen (the denial, and the cost-0
    verdicts after it that report a wait) in whole seconds (None if
    allowed, or if the cost can never be admitted); ``rate``, the RateLimit
    field (None without decisions); ``reporting``, the most restrictive
    decision (the longest denial, else the fewest remaining; None without
    decisions)."""

    denied: bool
    retry_after: int | None
    rate: str | None
    reporting: Any = field(repr=False)


NO_DECISION = Outcome(False, None, None, None)


def judge_one(limit: CompiledLimit, decision: Any) -> Outcome:
    """`judge_one` is `judge` for a route with one limit (the common case,
    kept short because every request pays for it)."""
    if decision is None:
        return NO_DECISION
    if decision.allowed:
        return Outcome(False, None, limit.rate_item(decision), decision)
    return Outcome(
        True, whole_seconds(decision.retry_after), limit.rate_item(decision), decision
    )


def judge(policy: RoutePolicy, decisions: Sequence[Any]) -> Outcome:
    """`judge` combines one decision per limit of ``policy``, in order
    (None: the limit had no key; after the first denial, cost-0 verdicts),
    into the answer: denied if one denies, with the longest wait among the
    denials and the verdicts after the first one."""
    if len(decisions) == 1:
        return judge_one(policy.limits[0], decisions[0])
    denied = False
    longest = 0.0
    items = []
    reporting = None
    for limit, decision in zip(policy.limits, decisions, strict=True):
        if decision is None:
            continue
        if not decision.allowed or (denied and decision.retry_after > 0):
            if not denied or decision.retry_after > longest:
                longest = decision.retry_after
                reporting = decision
            denied = True
        elif not denied and (
            reporting is None or decision.remaining < reporting.remaining
        ):
            reporting = decision
        items.append(limit.rate_item(decision))
    retry_after = whole_seconds(longest) if denied else None
    return Outcome(denied, retry_after, ", ".join(items) or None, reporting)


class MiddlewareBase(Generic[App, Request]):
    """`MiddlewareBase` is what the ASGI and WSGI middlewares share: their
    options (documented on :class:`ratefuse.web.RateLimitMiddleware`),
    validated and compiled at construction, and what to do with an
    outcome. ``side`` (a class attribute) says which requests the key
    readers read."""

    side: Side

    def __init__(
        self,
        app: App,
        routes: Sequence[Route],
        *,
        exempt_paths: Sequence[str] = (),
        exempt: Callable[[Request], bool] | None = None,
        shadow: bool = False,
        headers: HeaderMode = DEFAULT_HEADER_MODE,
        headers_on: HeadersOn = DEFAULT_HEADERS_ON,
        on_denied: Callable[[Request, Outcome], None] | None = None,
        denied_body: bytes = DEFAULT_DENIED_BODY,
        registry: object | None = None,
        deadline_from: DeadlineFrom | None = None,
    ) -> None:
        for option, value in (("exempt", exempt), ("on_denied", on_denied)):
            if value is not None and not callable(value):
                raise ValueError(f"{option} must be callable or None, got {value!r}")
        if not isinstance(denied_body, bytes):
            raise ValueError(f"denied_body must be bytes, got {denied_body!r}")
        self.app = app
        if deadline_from is not None:
            # The app runs under the request's deadline (web/deadlines.py).
            reader = deadline_reader(deadline_from, self.side)
            self.app = with_deadline(app, reader, self.side)
        self._router = compile_routes(
            routes, exempt_paths, self.side, headers, headers_on, registry
        )
        self._find = self._router.find
        for policy in self._router.targets.values():
            if policy is not None:
                policy.app = under_concurrency(self.side, self.app, policy.concurrency)
        self._exempt = exempt
        self._shadow = bool(shadow)
        self._on_denied = on_denied
        self._denied_body = denied_body
        self._denied_length = len(denied_body)

    def _extra_headers(
        self,
        request: Request,
        policy: RoutePolicy,
        outcome: Outcome,
        render: Callable[[Outcome, bool], list[Header]],
    ) -> list[Header] | None:
        # The headers to add to the app's response, rendered by ``render``
        # (text or ASGI bytes); None: answer 429 instead.
        if outcome.denied:
            if self._on_denied is not None:
                self._on_denied(request, outcome)
            if not self._shadow:
                return None
            # Shadow mode: let it through, without a Retry-After that would
            # tell a client (or a cache) to back off from a 200.
            return render(outcome, False)
        if policy.headers_on_admitted:
            return render(outcome, True)
        return []
