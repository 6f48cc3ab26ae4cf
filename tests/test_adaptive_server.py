"""The real-server check (issue 19): a uvicorn server in a subprocess whose
handler slows down with its in-flight work, driven at 2x its capacity by an
open-loop httpx client, without and with the adaptive middleware."""

from __future__ import annotations

import asyncio

from ratefuse.bench.adaptive_server import drive, figures, server


def test_the_adaptive_middleware_keeps_a_real_server_serving() -> None:
    rows = {}
    for adaptive in (False, True):
        with server(adaptive) as url:
            results, _ = asyncio.run(drive(url, 2.0, 4.0))
        rows[adaptive] = figures(str(adaptive), results, 4.0, 1.0)
    # Without a limit the queue grows until every answer is late; with the
    # adaptive limit the excess is refused at once and the rest served.
    assert rows[False].goodput < 0.5
    assert rows[False].failed > 0.5
    assert rows[True].goodput > rows[False].goodput + 0.3
    assert rows[True].refused > 0.2
    assert rows[True].failed < 0.2
