"""Monitor unit tests in the style of ``promtool test rules``: file format, notation and runner."""
