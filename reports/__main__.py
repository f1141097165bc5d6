"""`python -m reports RUN_DIR`: build the comparison report of a sweep directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from reports import build_report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m reports", description=__doc__)
    parser.add_argument("run_dir", type=Path, help="sweep directory holding results.parquet")
    args = parser.parse_args(argv)
    try:
        print(build_report(args.run_dir))
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
