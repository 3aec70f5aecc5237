"""The receiver: durable HTTP ingest of batches into object storage."""
