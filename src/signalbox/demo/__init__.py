"""``serve --demo``: a simulated photo service, and the folder it runs in.

:mod:`~signalbox.demo.service` is the simulation (it uses signalbox the way a real app
would); :mod:`~signalbox.demo.workspace` writes the demo's config, its monitors, and
clears a previous run's leftovers, so the CLI run in the same folder sees what the demo
runs.
"""
