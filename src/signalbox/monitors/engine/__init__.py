"""Evaluating monitors: observe, the pure state machine, notification policy, the runner and its loop."""
