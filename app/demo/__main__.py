"""`python -m app.demo [--exit]`: what `conveyor demo` runs."""

from __future__ import annotations

import argparse
import sys

from app.demo import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="conveyor demo",
        description="A complete local demo: a sample repository is pushed, built, deployed"
                    " to staging, then to production once approved.")
    parser.add_argument("--exit", action="store_true",
                        help="approve production itself and exit 0 once it is live"
                             " (1 if anything failed)")
    return run(exit_when_live=parser.parse_args(argv).exit)


if __name__ == "__main__":
    sys.exit(main())
