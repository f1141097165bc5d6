"""`python -m harness COMMAND [ARGS ...]`: the `lph` command (see harness/cli.py)."""

from harness.cli import main

main()
