"""Instrumentation: request ids, notes and access logs for WSGI and ASGI apps."""
