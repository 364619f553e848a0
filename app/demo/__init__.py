"""`conveyor demo [--exit]` (SPEC §8): the whole product on this machine, in one command."""

from app.demo.runner import run

__all__ = ["run"]
