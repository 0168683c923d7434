"""Pure parsers: spool files (``*.metrics`` key=value and ``*.prom``) and OpenMetrics for import."""
