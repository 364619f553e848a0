"""What the pipeline needs to act: settings, the pipeline file, the database and the queues."""

from __future__ import annotations

from dataclasses import dataclass

from app import config as config_module
from app.db import Database
from app.queue import Jobs, connect
from app.settings import Settings


@dataclass
class Context:
    settings: Settings
    config: config_module.Config
    db: Database
    jobs: Jobs

    def secrets(self) -> tuple[str, ...]:
        """Every secret value to mask in logs, statuses and answers."""
        return (self.config.secrets() + tuple(token for _, token in self.settings.api_tokens)
                + self.settings.aws_secrets)


def load(settings: Settings | None = None) -> Context:
    """Build a context from the environment; raises ConfigError for a broken pipeline file."""
    settings = settings or Settings.from_env()
    config = config_module.load(settings.config_path)
    return Context(settings=settings, config=config, db=Database(settings.database_url),
                   jobs=Jobs(connect(settings.redis_url)))
