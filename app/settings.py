"""The service's environment variables (SPEC §2), read once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Where Conveyor finds its pipeline file, Redis, database and data directory."""

    config_path: Path
    redis_url: str
    database_url: str
    data_dir: Path
    api_token: str | None
    secret_key: str | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from `environ` (default: the process environment)."""
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("CONVEYOR_DATA_DIR") or "./var").resolve()
        return cls(
            config_path=Path(env.get("CONVEYOR_CONFIG") or "conveyor.yml"),
            redis_url=env.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
            database_url=env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'conveyor.db'}",
            data_dir=data_dir,
            api_token=env.get("CONVEYOR_API_TOKEN") or None,
            secret_key=env.get("CONVEYOR_SECRET_KEY") or None,
        )
