"""Metrics: the operator's own (/metrics) and, for the control loops, metric providers."""
