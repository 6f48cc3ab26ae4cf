"""The core layer: pure state machines and the facts they decide with.

Nothing here reads a clock, does I/O or imports a module above it; every
compiled core has a typed reference twin (``_<name>_py``) and a selector.
"""
