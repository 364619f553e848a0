"""The `conveyor` command (SPEC §8). Exit 0 on success, 1 on a failed operation, 2 on usage
or configuration errors; errors go to stderr as one clear sentence each, never a
traceback."""

from __future__ import annotations

from collections.abc import Sequence

import click
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from app import config as cfg
from app.cli.commands import cli
from app.cli.output import CommandError, error

__all__ = ["CommandError", "cli", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: the process's) and return its exit status."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="conveyor",
                          standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message())
        return 2
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "conveyor"
        error(f"{exc.format_message()} (see {where} --help)")
        return exc.exit_code
    except click.ClickException as exc:
        error(exc.format_message())
        return exc.exit_code
    except click.Abort:
        return 130
    except cfg.ConfigError as exc:
        error(str(exc))
        return 2
    except CommandError as exc:
        error(str(exc))
        return exc.status
    except RedisError as exc:
        error(f"cannot use Redis: {exc}")
        return 1
    except SQLAlchemyError as exc:
        error(f"cannot use the database: {type(exc).__name__}: {getattr(exc, 'orig', exc)}")
        return 1
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) else 0
