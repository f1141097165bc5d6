"""The `lph` command: `lph COMMAND [ARGS ...]`, the same as `python -m harness COMMAND [ARGS ...]`.

Each command hands the rest of the command line to its module's own `main(argv)`, so `lph sweep SPEC --dry-run` is
`python -m harness.sweep SPEC --dry-run`. `lph COMMAND --help` lists the command's options with their defaults.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps a description's line breaks (the modules' docstrings) and appends each option's default to its help,
    except a default of None, whose meaning the help itself states (e.g. "default runs/<name>")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


@dataclass(frozen=True)
class Command:
    """A subcommand: the module whose `main(argv)` runs it and a one-line summary for `lph --help`."""

    module: str
    summary: str


COMMANDS: dict[str, Command] = {
    "sweep": Command("harness.sweep.run", "run a sweep spec (grid or Optuna x seeds) on an executor"),
    "train": Command("harness.trial.train", "train and score one run config"),
    "evaluate": Command("harness.trial.evaluate", "score a run directory's checkpoint with lm-evaluation-harness"),
    "report": Command("reports.__main__", "build the comparison report of a sweep directory"),
    "claims": Command("reports.claims", "the paper's claims, one by one, over sweeps and diagnostics"),
    "settle": Command("reports.sequential", "replay the sequential (seeds on demand) procedure on a sweep"),
    "repro": Command("harness.repro", "headline numbers under torch's best and its generic CPU kernels, side by side"),
    "diagnose": Command("harness.diagnostics.diagnose", "estimator diagnostics on the exact-gradient testbed"),
    "bench": Command("harness.bench", "benchmarks (estimators, rewards, train, eval, sweep)"),
    "gpu-check": Command("harness.gpu_check", "bf16 CUDA training step, CUDA estimator timings, vLLM rollouts"),
    "model": Command("harness.trial.model_import", "model import FILE.gguf OUT_DIR: a local HF model directory"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: only the command name; its arguments are parsed by the command itself."""
    listing = "\n".join(f"  {name:<10} {command.summary}" for name, command in COMMANDS.items())
    parser = argparse.ArgumentParser(prog="lph", description=__doc__, formatter_class=HelpFormatter,
                                     epilog=f"commands:\n{listing}")
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of the commands below")
    return parser


def run_command(name: str, argv: list[str]) -> None:
    """Import the command's module (only then: `lph --help` loads no torch) and call its `main(argv)`."""
    importlib.import_module(COMMANDS[name].module).main(argv)


def main(argv: list[str] | None = None) -> None:
    """Entry point of `lph` and `python -m harness`."""
    argv = sys.argv[1:] if argv is None else argv
    command = build_parser().parse_args(argv[:1]).command
    run_command(command, argv[1:])
