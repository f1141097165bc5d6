"""Estimator diagnostics on an exact-gradient testbed (`testbed`, `diagnose`)."""
