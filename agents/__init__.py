"""Floe agents: the data-path daemons. Each role wires shared runtime components (see agents/runtime)."""
