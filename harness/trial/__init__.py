"""One trial: build the policy (`model`), train it with the injected estimator (`train`, `trl_hooks`) and score it
(`scoring`, `evaluate`)."""
