"""StatsD: the UDP listener (I/O) over a pure packet parser and aggregator."""
