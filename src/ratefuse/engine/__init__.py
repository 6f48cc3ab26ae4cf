"""The engine layer: the verbs (try_acquire, decide, reserve, acquire)
over the cores' state, and the waiting between attempts."""
