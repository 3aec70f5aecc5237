"""The proxy: edge collection. Inputs per assigned dataset, batching and compression, the disk
spool and forwarding to receivers."""
