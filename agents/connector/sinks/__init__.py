"""Export destinations, one module each; ``open_sink`` builds the one a job names."""

from __future__ import annotations

from agents.connector.sinks.common import DeliveryError, ItemFailure, RejectedBatch, Sink
from agents.connector.spec import JobSpec

__all__ = ["DeliveryError", "ItemFailure", "RejectedBatch", "Sink", "open_sink"]


def open_sink(spec: JobSpec) -> Sink:
    """The job's sink; raises ``SecretError`` when a credential cannot be read on this host."""
    kind = spec.kind
    if kind == "elasticsearch":
        from agents.connector.sinks.elasticsearch import ElasticsearchSink

        return ElasticsearchSink(spec)
    if kind == "splunk_hec":
        from agents.connector.sinks.splunk import SplunkHecSink

        return SplunkHecSink(spec)
    if kind == "webhook":
        from agents.connector.sinks.webhook import WebhookSink

        return WebhookSink(spec)
    from agents.connector.sinks.stdout import StdoutSink

    return StdoutSink()
