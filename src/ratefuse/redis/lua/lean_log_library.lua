-- The library's lean sliding log: lean_log.lua's decider beside
-- lean.lua's (library.lua registers each algorithm's LEAN decider).
LEAN.sliding_log = sliding_log_lean
