"""Instruction emission, one module per op kind. Each emitter takes the compilation
:class:`~sim.compile.context.Context`, the node (or the fused chain) and its ``Binary.layers``
record, allocates the node's constant blocks, and emits its tiles' LOAD / compute / STORE
instructions with their events through the :class:`~sim.compile.schedule.Scheduler`."""
