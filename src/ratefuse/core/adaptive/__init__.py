"""The adaptive concurrency limit's core: the algorithms (AIMD, Vegas,
Gradient2) as integer steps over a limit state, compiled with a reference
twin, and their public configs."""
