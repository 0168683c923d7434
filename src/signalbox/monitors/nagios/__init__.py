"""Nagios plugins: running them as Nagios does, and their output and perfdata as metrics."""
