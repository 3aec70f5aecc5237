"""Thin gRPC servicers: parse the request, check the principal, call the store, build the reply."""
