"""Sources of the data path: one module per source, each turning what arrives on the wire into
records. ``syslog`` parses RFC 3164/5424 on Arrow arrays and frames TCP streams; ``netflow`` and
``sflow`` decode flow export packets, sharing the IANA registry, drop counters and template cache
of ``flow_common``."""
