from ratefuse.core._step cimport StepFunctions

# The compiled fixed_window core, a row of the table in core/_compound_c.pyx.
cdef StepFunctions STEP_FUNCTIONS
