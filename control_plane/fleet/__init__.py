"""The agent fleet: control streams, desired configs, status, commands and work leases."""
