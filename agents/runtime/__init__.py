"""The runtime every Floe agent shares: settings, the control stream, config cache, health and
the HTTP API port. A role (proxy, receiver, ...) plugs in through ``agents.runtime.role.Role``."""
