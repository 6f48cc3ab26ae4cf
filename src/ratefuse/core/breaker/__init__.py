"""The circuit breaker's core: states, transition table, config, the
sliding windows and the fleet breaker's recorder."""
