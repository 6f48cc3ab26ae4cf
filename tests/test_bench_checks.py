"""`ratefuse bench` fails early and says why (bad paths, bad URLs, missing
extras, options a mode does not read, nothing to plot), judges a limiter
that admits nothing, times batches per decision, writes no carriage
returns off a terminal, keeps its table's columns aligned and compares
peers' keyed rows with ratefuse's."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from ratefuse.__main__ import main
from ratefuse.bench import accuracy, asgi, cli, scenarios
from ratefuse.bench.accuracy import Verdict
from ratefuse.bench.peers import limiter_peer_scenarios
from ratefuse.bench.progress import Progress
from ratefuse.bench.report import speed_table
from ratefuse.bench.scenarios import Measurement, Scenario
from ratefuse.bench.scenarios_keyed import keyed_scenarios

ADMITS_NOTHING = """
def never_allow():
    return lambda: False
"""


@pytest.fixture
def no_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """`no_run` fails a test whose command gets as far as measuring."""

    def refuse(*args: object, **kwargs: object) -> Any:
        raise AssertionError("the run started before the mistake was reported")

    monkeypatch.setattr(cli, "measure", refuse)
    monkeypatch.setattr(accuracy, "run_threads", refuse)
    monkeypatch.setattr(asgi, "measure", refuse)


def test_accuracy_fails_a_limiter_that_admits_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "admitsnothing.py").write_text(ADMITS_NOTHING)
    monkeypatch.syspath_prepend(str(tmp_path))
    report = tmp_path / "accuracy.json"
    argv = ["bench", "accuracy", "--workers", "2", "--duration", "0.2"]
    argv += ["--target", "admitsnothing:never_allow", "--only", "admitsnothing"]
    try:
        assert main([*argv, "--json", str(report)]) == 1
    finally:
        sys.modules.pop("admitsnothing", None)
    captured = capsys.readouterr()
    assert "ADMITS TOO LITTLE" in captured.out
    assert "holds" not in captured.out
    assert "admitted too little: admitsnothing:never_allow" in captured.err
    (row,) = json.loads(report.read_text())["accuracy"]
    assert row["admitted"] == 0
    assert row["verdict"] == "admits_too_little"
    assert row["least"] >= accuracy.LIMIT


@pytest.mark.parametrize(
    ("kind", "elapsed_ms", "admitted", "verdict"),
    [
        ("meter", 1_000, 2_000, Verdict.HOLDS),
        ("meter", 1_000, 2_001, Verdict.OVER_THE_BOUND),
        ("meter", 1_000, 999, Verdict.ADMITS_TOO_LITTLE),
        ("meter", 1_000, 0, Verdict.ADMITS_TOO_LITTLE),
        ("window", 3_000, 1_500, Verdict.HOLDS),
        ("window", 3_000, 1_499, Verdict.ADMITS_TOO_LITTLE),
        ("rolling", 500, 500, Verdict.HOLDS),
        ("rolling", 500, 499, Verdict.ADMITS_TOO_LITTLE),
    ],
)
def test_verdicts_judge_both_ways(
    kind: str, elapsed_ms: int, admitted: int, verdict: Verdict
) -> None:
    end = elapsed_ms * 1_000_000
    result = accuracy.AccuracyResult(
        target="t",
        workers=1,
        attempts=10**6,
        admitted=admitted,
        bound=accuracy.bound(kind, 0, end),
        elapsed_s=elapsed_ms / 1000,
        utilisation=0.0,
        worst_window=0,
        limit=accuracy.LIMIT,
        period_s=accuracy.PERIOD_S,
        ours=True,
        least=accuracy.least(kind, 0, end),
    )
    assert result.verdict is verdict


def test_a_batch_is_timed_per_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake clock charges 100 ns per decision: a decide_many of 1,000
    keys must come out at 100 ns whatever the calibration chose."""
    now = [0]
    monkeypatch.setattr(scenarios.time, "perf_counter_ns", lambda: now[0])
    calls: list[int] = []

    def batches(n: int) -> None:
        calls.append(n)
        now[0] += n * 1_000 * 100

    scenario = Scenario("batch", "fake", "-", lambda: batches, per_call=1_000)
    [calibrated] = scenarios.measure([scenario], repeats=3, sample_seconds=0.02)
    assert calibrated.median_ns == calibrated.min_ns == calibrated.max_ns == 100
    assert calls[0] == 1  # calibration starts at one batch, not 100
    [fixed] = scenarios.measure([scenario], repeats=1, calls=2_500)
    assert fixed.median_ns == 100
    assert calls[-1] == 3  # 2,500 decisions: three whole batches


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--redis", "http://127.0.0.1:1"], "--redis http://127.0.0.1:1: cannot use"),
        (["--redis", "redis://127.0.0.1:1"], "--redis redis://127.0.0.1:1: cannot"),
        (["--redis-cluster", "redis://127.0.0.1:1"], "--redis-cluster redis://"),
        (
            ["--json", "/nonexistent-dir/x.json"],
            "--json /nonexistent-dir/x.json: cannot",
        ),
        (["--plot", "/nonexistent-dir/x.png"], "--plot /nonexistent-dir/x.png: cannot"),
        (["--json", "/tmp"], "--json /tmp: is a directory"),
        (["--only", "floor", "--plot", "x.png"], "--plot x.png: nothing to draw"),
        (["--workers", "3"], "--workers does not apply to ratefuse bench speed"),
        (["--connections", "3"], "--connections does not apply"),
        (["--duration", "1"], "--duration does not apply to ratefuse bench speed"),
    ],
)
def test_speed_mistakes_fail_at_once(
    no_run: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=message) as raised:
        main(["bench", "--quick", *extra])
    assert raised.value.code != 0
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["accuracy", "--plot", "x.png"],
            "--plot does not apply to ratefuse bench accuracy",
        ),
        (["accuracy", "--repeats", "2"], "--repeats does not apply"),
        (["accuracy", "--json", "/nonexistent-dir/a.json"], "cannot write"),
        (["accuracy", "--target", "no_such_module:f"], "no_such_module:f: cannot load"),
        (["accuracy", "--target", "json:no_such"], "json:no_such: cannot load"),
        (["accuracy", "--target", "json:__doc__"], "__doc__ is not callable"),
        (["asgi", "--plot", "x.png"], "--plot does not apply to ratefuse bench asgi"),
        (["asgi", "--peers"], "--peers does not apply to ratefuse bench asgi"),
        (["asgi", "--redis", "redis://x"], "--redis does not apply"),
        (["asgi", "--only", "nothing"], "no asgi variant matches --only nothing"),
        (["asgi", "--json", "/nonexistent-dir/a.json"], "cannot write"),
    ],
)
def test_accuracy_and_asgi_mistakes_fail_at_once(
    no_run: None, argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit, match=message):
        main(["bench", *argv])


def test_asgi_only_selects_variants_beside_plain() -> None:
    assert asgi.select_variants([]) == asgi.VARIANTS
    assert asgi.select_variants(["all-headers"]) == ("plain", "all-headers")
    assert asgi.select_variants(["middleware"]) == ("plain", "middleware")
    assert asgi.select_variants(["plain"]) == ("plain",)


@pytest.mark.parametrize(
    ("blocked", "argv", "message"),
    [
        (
            "numpy",
            ["--only", "keyed try_acquire/1k"],
            "needs numpy: pip install 'ratefuse[bench]'",
        ),
        (
            "matplotlib",
            ["--plot", "x.png"],
            "--plot needs matplotlib: pip install 'ratefuse[bench]'",
        ),
        ("starlette", ["asgi"], "asgi needs starlette: pip install 'ratefuse[bench]'"),
        (
            "redis",
            ["--redis", "redis://x"],
            "--redis needs redis: pip install 'ratefuse[redis]'",
        ),
        (
            "httptools",
            ["asgi", "--http", "httptools"],
            "--http httptools needs httptools: pip install 'ratefuse[bench]'",
        ),
    ],
)
def test_a_missing_extra_is_named(
    no_run: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    blocked: str,
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, blocked, None)  # import fails as if absent
    with pytest.raises(SystemExit) as raised:
        main(["bench", *argv, "--quick"])
    assert message in str(raised.value.code)


def test_progress_writes_no_carriage_return_off_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["bench", "--quick", "--repeats", "2", "--only", "floor/"]
    assert main(argv) == 0
    assert (
        main(["bench", "accuracy", "--duration", "0.1", "--only", "ratefuse gcra"]) == 0
    )
    err = capsys.readouterr().err
    assert "\r" not in err
    assert "floor: 2 repeats" in err
    assert "accuracy: 2 targets" in err


def test_progress_redraws_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    progress = Progress("group", terminal)
    progress.repeats(1, 2)
    progress.repeats(2, 2)
    assert terminal.getvalue() == (
        "\r\033[K  group: repeat 1/2\r\033[K  group: 2 repeats\n"
    )


def _measurement(group: str, name: str, implementation: str, ns: float) -> Measurement:
    scenario = Scenario(group, name, implementation, lambda: scenarios.empty_loop)
    return Measurement(scenario, ns, ns, ns)


def test_table_columns_stay_aligned_with_long_labels() -> None:
    results = [
        _measurement("try_acquire", "gcra", "cython", 50.0),
        _measurement(
            "redis decide_many x1000, a long group",
            "gcra",
            "throttled-py gcra 2.2.3 with a long label",
            123456.7,
        ),
        _measurement("floor", "empty loop", "-", 5.0),
    ]
    lines = speed_table(results)
    header = lines[0]
    end = header.index("ns/call") + len("ns/call")
    for line, result in zip(lines[1:], results, strict=True):
        assert line[:end].endswith(f"{result.median_ns:.1f}"), line
        assert line[end] == " "


def test_peers_keyed_rows_are_compared_with_ratefuse() -> None:
    pytest.importorskip("token_bucket")
    found, _ = limiter_peer_scenarios()
    ours = {(s.group, s.name) for s in keyed_scenarios()}
    keyed = [s for s in found if s.group.startswith("keyed")]
    assert keyed
    assert all(s.compared_as in ours for s in keyed)
    peer = keyed[0]
    results = [
        _measurement(*peer.compared_as, "cython", 100.0),
        Measurement(peer, 1000.0, 1000.0, 1000.0),
    ]
    assert speed_table(results)[2].endswith("10.0x faster")


def test_asgi_only_reaches_both_measurements(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ratefuse.bench import asgi_inprocess

    seen: dict[str, tuple[str, ...]] = {}

    def servers(*args: Any) -> list[asgi.AsgiFigures]:
        seen["servers"] = args[-1]
        return [asgi.AsgiFigures(v, [1.0], [1.0]) for v in args[-1]]

    def in_process(repeats: int, requests: int, variants: Any) -> Any:
        seen["in_process"] = variants
        return {variant: [1.0] for variant in variants}

    monkeypatch.setattr(asgi, "measure", servers)
    monkeypatch.setattr(asgi_inprocess, "measure", in_process)
    assert main(["bench", "asgi", "--quick", "--only", "all-headers"]) == 0
    assert seen == {
        "servers": ("plain", "all-headers"),
        "in_process": ("plain", "all-headers"),
    }
    assert "middleware cost" not in capsys.readouterr().out
