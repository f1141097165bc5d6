"""lambdapo-harness: configs, tasks, the tiny-model factory, the trainer, scoring, sweeps, executors and CLIs.

Offline by default: nothing is requested from the Hugging Face hub unless HF_HUB_OFFLINE / HF_DATASETS_OFFLINE are
set to 0 by the user.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
