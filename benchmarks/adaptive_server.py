"""The real-server check of the adaptive concurrency limit (issue 19): see
:mod:`ratefuse.bench.adaptive_server`. Run: ``python benchmarks/adaptive_server.py``
(``--quick`` for 3 s runs, ``--load 3`` for another load)."""

from ratefuse.bench.adaptive_server import main

if __name__ == "__main__":
    raise SystemExit(main())
