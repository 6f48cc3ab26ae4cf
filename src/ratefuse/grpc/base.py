"""What the sync and asyncio server interceptors share: the rules (given,
or read from a registry's ``[grpc]`` config and followed across hot
reloads) and the compiled policy of each method, made on its first call
and cached with the handler it wraps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ratefuse.adaptive import AdaptiveLimiter
from ratefuse.bulkhead import Bulkhead
from ratefuse.grpc.admission import MethodPolicy
from ratefuse.grpc.config import server_rules
from ratefuse.grpc.deadlines import under_call_deadline
from ratefuse.grpc.rules import MethodRule, method_router

# Makes a wrapped behavior: (behavior, policy, admit each message).
MakeBehavior = Callable[[Any, MethodPolicy, bool], Any]


class InterceptorBase:
    """`InterceptorBase` holds the rules of a server interceptor and the
    wrapped handler of each method seen. ``rules`` None reads them from
    ``registry`` (its config's ``[[grpc.methods]]``), again after each
    reload; ``aio`` says which server's handlers are wrapped.
    ``call_deadline`` runs every handler under ``ratefuse.deadline`` of
    the time its call has left (see :mod:`ratefuse.grpc.deadlines`)."""

    aio: bool

    def __init__(
        self,
        rules: Sequence[MethodRule] | None = None,
        *,
        registry: object | None = None,
        call_deadline: bool = False,
    ) -> None:
        if rules is None and registry is None:
            raise ValueError("give rules, or a registry whose config has [grpc] rules")
        if not isinstance(call_deadline, bool):
            raise ValueError(
                f"call_deadline must be True or False, got {call_deadline!r}"
            )
        self._call_deadline = call_deadline
        self._registry: Any = registry
        self._rules = rules
        self._config_seen: object = None
        self._cache: dict[str, tuple[Any, Any]] = {}
        self._bulkheads: dict[str, Bulkhead] = {}
        self._compile()

    def _bulkhead(
        self, bulkhead: int | Bulkhead | AdaptiveLimiter | None, method: str
    ) -> Bulkhead | AdaptiveLimiter | None:
        # A rule's int is a bulkhead of its own per method, made once (two
        # threads making a method's policy at once get the same one) and
        # kept across reloads that keep its size, with its calls in flight.
        if not isinstance(bulkhead, int):
            return bulkhead
        made = self._bulkheads.get(method)
        if made is None or made.max_concurrent != bulkhead:
            fresh = Bulkhead(bulkhead, name=method)
            made = self._bulkheads.setdefault(method, fresh)
            if made.max_concurrent != bulkhead:
                made = self._bulkheads[method] = fresh
        return made

    def _compile(self) -> None:
        # The rules given, or the registry's; the policies made from them
        # are made again on each method's next call (a reload may also have
        # replaced a named limiter by a new object).
        rules = self._rules
        if self._registry is not None:
            config = self._config_seen = self._registry.config
            if rules is None:
                rules = server_rules(config)
        assert rules is not None
        self._router = method_router(rules)
        self._cache = {}

    def wrapped(
        self, handler: Any, method: str, unary: MakeBehavior, streaming: MakeBehavior
    ) -> Any:
        """`wrapped` is ``handler`` with the policy of ``method`` applied
        (by ``unary`` to a behavior with one response, else by
        ``streaming``), made once per method and handler; the handler
        itself when no rule limits the method."""
        registry = self._registry
        if registry is not None and registry.config is not self._config_seen:
            self._compile()
        cached = self._cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        given = handler
        rule = self._router.find("", method)
        if self._call_deadline:
            handler = under_call_deadline(handler, self.aio)
        result = handler
        if rule is not None and (rule.limits or rule.bulkhead is not None):
            bulkhead = self._bulkhead(rule.bulkhead, method)
            policy = MethodPolicy(rule, method, bulkhead, self._registry, self.aio)
            result = _wrap(handler, policy, unary, streaming)
        self._cache[method] = (given, result)
        return result


def _wrap(
    handler: Any, policy: MethodPolicy, unary: MakeBehavior, streaming: MakeBehavior
) -> Any:
    # The RpcMethodHandler (a namedtuple) with its one behavior replaced.
    per_message = bool(handler.request_streaming) and policy.per_message
    for kind, make in (
        ("unary_unary", unary),
        ("stream_unary", unary),
        ("unary_stream", streaming),
        ("stream_stream", streaming),
    ):
        behavior = getattr(handler, kind)
        if behavior is not None:
            return handler._replace(**{kind: make(behavior, policy, per_message)})
    raise ValueError(f"handler {handler!r} has no behavior")
