"""`ratefuse bench`: what the engine costs, how accurate it is, and how it
compares with the libraries users would otherwise pick.

The scenarios are the ones ``benchmarks/`` measures with pytest-benchmark
(:mod:`ratefuse.bench.scenarios` and the modules it gathers), not copies of them.
"""
