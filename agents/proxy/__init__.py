"""The proxy: edge collection. Starts, rebinds and stops a listener per assigned dataset."""
