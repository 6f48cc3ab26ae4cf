"""The rate-limit algorithms, one module per algorithm: its reference step
functions (the compiled twins are ext/ratefuse/core/algorithms/)."""
