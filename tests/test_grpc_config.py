"""The ``[grpc]`` section of a registry's config: checked whole with every
error named by its path, lowered to the interceptors' rules, and followed
by a server interceptor across hot reloads (new rates, new rules)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from grpc_support import Gate, method, serve
from ratefuse.breaker import State
from ratefuse.config import ConfigError, Registry
from ratefuse.grpc import (
    AsyncServerInterceptor,
    CircuitOpenRpcError,
    ClientInterceptor,
    ServerInterceptor,
)
from web_support import ManualClock

TOKEN = (("x-api-key", "a"),)


def config(rate: str, *methods: dict[str, Any]) -> dict[str, Any]:
    return {
        "limiters": {
            "per_token": {"rate": rate, "keyed": True},
            "outbound": {"rate": "5/s"},
        },
        "breakers": {"inventory": {"failure_rate_threshold": 50}},
        "grpc": {
            "methods": list(methods)
            or [
                {
                    "pattern": "/test.Echo/Say",
                    "limits": [
                        {
                            "limiter": "per_token",
                            "key": "metadata:x-api-key",
                            "name": "per-token",
                        }
                    ],
                }
            ],
            "clients": {"inventory": {"breaker": "inventory", "limiter": "outbound"}},
        },
    }


@pytest.mark.parametrize(
    ("grpc_section", "message"),
    [
        ({"method": []}, "grpc.method: unknown field"),
        ({"methods": [{"pattern": "Say"}]}, "grpc.methods[0].pattern: must be a full"),
        (
            {"methods": [{"pattern": "/a.B/C", "limits": [{"limiter": "nope"}]}]},
            "grpc.methods[0].limits[0].limiter: no limiter named 'nope' in limiters",
        ),
        (
            {
                "methods": [
                    {"pattern": "/a.B/C", "limits": [{"limiter": "x", "key": "peer"}]}
                ]
            },
            "grpc.methods[0].limits[0].key: limiter 'x' is not keyed",
        ),
        (
            {
                "methods": [
                    {"pattern": "/a.B/C", "limits": [{"limiter": "k", "key": "cookie"}]}
                ]
            },
            "grpc.methods[0].limits[0].key: must be one of peer, method, metadata",
        ),
        (
            {"methods": [{"pattern": "/a.B/C", "bulkhead": 0}]},
            "grpc.methods[0].bulkhead: must be an int >= 1, got 0",
        ),
        (
            {"methods": [{"pattern": "/a.B/C", "max_wait": -1}]},
            "grpc.methods[0].max_wait: must be seconds >= 0, got -1",
        ),
        (
            {"clients": {"c": {"breaker": "nope"}}},
            "grpc.clients.c.breaker: no breaker named 'nope' in breakers",
        ),
        (
            {"clients": {"c": {"limiter": "k"}}},
            "grpc.clients.c.limiter: 'k' is keyed; a client needs one quota",
        ),
        (
            {"clients": {"c": {"failure_codes": ["BROKEN"]}}},
            "grpc.clients.c.failure_codes: must be a list of gRPC status code names",
        ),
    ],
)
def test_bad_grpc_config_is_refused_naming_the_path(
    grpc_section: dict[str, Any], message: str
) -> None:
    raw = {
        "limiters": {"x": {"rate": "1/s"}, "k": {"rate": "1/s", "keyed": True}},
        "grpc": grpc_section,
    }
    with pytest.raises(ConfigError) as refused:
        Registry(raw)
    assert any(error.startswith(message) for error in refused.value.errors), (
        refused.value.errors
    )


def test_the_grpc_section_is_lowered_to_entries() -> None:
    registry = Registry(config("2/10s"))
    (rule,) = registry.config.grpc.methods
    assert rule.pattern == "/test.Echo/Say"
    (limit,) = rule.limits
    assert (limit.limiter, limit.key, limit.cost, limit.name) == (
        "per_token",
        "metadata:x-api-key",
        1,
        "per-token",
    )
    client = registry.config.grpc.clients["inventory"]
    assert client.breaker == "inventory"
    assert "UNAVAILABLE" in client.failure_codes
    assert Registry({}).config.grpc.methods == ()


@pytest.mark.parametrize("kind", ["sync", "aio"])
def test_a_server_interceptor_follows_the_registry_across_reloads(kind: str) -> None:
    clock = ManualClock()
    registry = Registry(config("2/10s"), clock=clock)
    cls = ServerInterceptor if kind == "sync" else AsyncServerInterceptor
    gate = Gate()
    with (
        serve(kind, [cls(registry=registry)], gate) as address,
        grpc.insecure_channel(address) as channel,
    ):
        say = method(channel, "Say")
        assert say(b"x", metadata=TOKEN) == b"x"
        assert say(b"x", metadata=TOKEN) == b"x"
        with pytest.raises(grpc.RpcError) as denied:
            say(b"x", metadata=TOKEN)
        assert denied.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "'per-token'" in denied.value.details()
        # New rates: the limiter changes in place, its state kept.
        registry.update(config("4/10s"))
        clock.advance(2.5)  # one unit of 4/10s (2/10s would need 5 s)
        assert say(b"x", metadata=TOKEN) == b"x"
        # New rules: Say is free now, Count is limited per method.
        registry.update(
            config(
                "4/10s",
                {
                    "pattern": "/test.Echo/Count",
                    "limits": [{"limiter": "per_token", "key": "method"}],
                },
            )
        )
        for _ in range(5):
            assert say(b"x", metadata=TOKEN) == b"x"
        count = method(channel, "Count", "unary_stream")
        for _ in range(4):
            assert list(count(b"1")) == [b"0"]
        with pytest.raises(grpc.RpcError) as denied:
            list(count(b"1"))
        assert denied.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_config_bulkheads_are_per_method() -> None:
    registry = Registry(
        {"grpc": {"methods": [{"pattern": "/test.Echo/*", "bulkhead": 1}]}}
    )
    gate = Gate()
    with (
        serve("sync", [ServerInterceptor(registry=registry)], gate) as address,
        grpc.insecure_channel(address) as channel,
    ):
        held = method(channel, "Hold").future(b"x")
        assert gate.entered.wait(10)
        assert method(channel, "Say")(b"y") == b"y"
        with pytest.raises(grpc.RpcError) as refused:
            method(channel, "Hold")(b"x")
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        gate.released.set()
        assert held.result(10) == b"done"


def client_config(breaker: str | None) -> dict[str, Any]:
    client = {} if breaker is None else {"breaker": breaker}
    return {
        "breakers": {
            "inventory": {"window_size": 2, "minimum_calls": 2, "wait_duration": 10},
        },
        "grpc": {"clients": {"inventory": client}},
    }


def test_a_client_interceptor_follows_its_registry_entry() -> None:
    registry = Registry(client_config("inventory"), clock=ManualClock())
    gate = Gate()
    interceptor = ClientInterceptor(registry=registry, client="inventory")
    with (
        serve("sync", [], gate) as address,
        grpc.intercept_channel(grpc.insecure_channel(address), interceptor) as channel,
    ):
        fail = method(channel, "Fail")
        for _ in range(2):
            with pytest.raises(grpc.RpcError):
                fail(b"x")
        assert registry.breaker("inventory").state == State.OPEN
        with pytest.raises(CircuitOpenRpcError):
            fail(b"x")
        assert gate.calls == 2
        registry.update(client_config(None))  # no breaker for this client now
        with pytest.raises(grpc.RpcError) as failed:
            fail(b"x")
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        assert gate.calls == 3


def test_a_client_must_be_in_the_registry() -> None:
    with pytest.raises(KeyError, match="no gRPC client named 'nope'"):
        ClientInterceptor(registry=Registry({}), client="nope")
    with pytest.raises(ValueError, match="registry and client go together"):
        ClientInterceptor(registry=Registry({}))


def test_the_readme_grpc_toml_block_loads(tmp_path: Any) -> None:
    # The README's TOML for the gRPC section is a config the registry takes
    # as printed, with the server rule and the client guard it describes.
    from readme_examples import TOML_BLOCKS

    (block,) = [block for block in TOML_BLOCKS if "[[grpc.methods]]" in block]
    (tmp_path / "grpc.toml").write_text(block)
    registry = Registry.from_toml(tmp_path / "grpc.toml")
    grpc_config = registry.config.grpc
    assert grpc_config is not None
    assert [rule.pattern for rule in grpc_config.methods] == ["/shop.Inventory/*"]
    assert list(grpc_config.clients) == ["inventory"]
