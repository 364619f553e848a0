"""The service's environment variables (SPEC §2), read once at start."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# The single CONVEYOR_API_TOKEN's name in the audit log (SPEC §2).
ADMIN = "admin"
# What boto3 takes from the environment that must never be shown.
AWS_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


class SettingsError(ValueError):
    """An environment variable Conveyor cannot use; the message says which and why."""


@dataclass(frozen=True)
class Settings:
    """Where Conveyor finds its pipeline file, Redis, database and data directory."""

    config_path: Path
    redis_url: str
    database_url: str
    data_dir: Path
    api_token: str | None
    secret_key: str | None
    # (name, token) of every API token: CONVEYOR_API_TOKEN as `admin`, then
    # CONVEYOR_API_TOKENS (`alice:<token>,ci:<token>`).
    api_tokens: tuple[tuple[str, str], ...] = ()
    # The AWS secrets boto3 reads from the environment (artifacts.store: s3), to mask.
    aws_secrets: tuple[str, ...] = ()
    # CONVEYOR_METRICS_TOKEN: when set, /metrics asks for it as a bearer token.
    metrics_token: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from `environ` (default: the process environment)."""
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("CONVEYOR_DATA_DIR") or "./var").resolve()
        api_token = env.get("CONVEYOR_API_TOKEN") or None
        return cls(
            config_path=Path(env.get("CONVEYOR_CONFIG") or "conveyor.yml"),
            redis_url=env.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
            database_url=env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'conveyor.db'}",
            data_dir=data_dir,
            api_token=api_token,
            secret_key=env.get("CONVEYOR_SECRET_KEY") or None,
            api_tokens=named_tokens(api_token, env.get("CONVEYOR_API_TOKENS") or ""),
            aws_secrets=tuple(filter(None, (env.get(name) for name in AWS_SECRETS))),
            metrics_token=env.get("CONVEYOR_METRICS_TOKEN") or None,
        )


def named_tokens(api_token: str | None, listed: str) -> tuple[tuple[str, str], ...]:
    """Every (name, token): `api_token` as `admin`, then each `name:token` of `listed`
    (comma-separated). Raises SettingsError naming the entry that is wrong."""
    tokens = [(ADMIN, api_token)] if api_token else []
    for entry in filter(None, (part.strip() for part in listed.split(","))):
        name, colon, token = entry.partition(":")
        if not colon or not token.strip():
            raise SettingsError("CONVEYOR_API_TOKENS: each entry is name:token "
                                f"(an entry named {name.strip()[:64]!r} has no token)")
        name, token = name.strip(), token.strip()
        if not _TOKEN_NAME.fullmatch(name):
            raise SettingsError(f"CONVEYOR_API_TOKENS: {name[:64]!r} is not a token name "
                                "(letters, digits, _ . @ -; at most 64)")
        if name in {known for known, _ in tokens}:
            raise SettingsError(f"CONVEYOR_API_TOKENS: the name {name!r} is given twice"
                                + (" (admin is CONVEYOR_API_TOKEN's)" if name == ADMIN else ""))
        tokens.append((name, token))
    return tuple(tokens)


def mirror_path(data_dir: Path, project: str) -> Path:
    """Where a machine keeps the project's bare git mirror: the build, deploy and chat jobs
    make and read it there, and the dashboard reads it when it runs on the same machine."""
    return data_dir / "mirrors" / f"{project}.git"
