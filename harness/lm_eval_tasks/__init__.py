"""lm-eval task template and its process_results (rendered into each run directory by harness.trial.evaluate)."""
