"""Floe control plane: the gRPC API for keys, tenants, datasets, users and health."""
