"""Ports, HTTP readiness, and per-run Redis and PostgreSQL databases."""

from __future__ import annotations

import os
import secrets
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import redis
from sqlalchemy.engine import make_url

REDIS_BASE = "redis://127.0.0.1:6379"
POSTGRES_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CLAIM_KEY = "conveyor-test-claim"
MARK_KEY = "conveyor-test-db"  # stays after the claim expires: such a database may be reused
CLAIM_SECONDS = 6 * 3600  # longer than any test run, so a slow run keeps its database

# Atomically: take the database if it is empty or a test run's whose claim expired.
_CLAIM = """
if redis.call('DBSIZE') == 0
   or (redis.call('EXISTS', KEYS[2]) == 1 and redis.call('EXISTS', KEYS[1]) == 0) then
  redis.call('FLUSHDB')
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  redis.call('SET', KEYS[2], '1')
  return 1
end
return 0
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind may still race)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 30) -> None:
    """Poll `url` until it answers 200; raise TimeoutError with the last answer otherwise."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}"
        except OSError as error:
            last = repr(error)
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 200 within {timeout} s (last: {last})")


def redis_url_for_run() -> str:
    """Claim an empty Redis database among 1..15 for this test run and return its URL."""
    base = os.environ.get("CONVEYOR_TEST_REDIS_URL", REDIS_BASE).rstrip("/")
    base = base.rsplit("/", 1)[0] if base.rsplit("/", 1)[-1].isdigit() else base
    owner = f"{socket.gethostname()}:{os.getpid()}"
    for db in range(1, 16):
        url = f"{base}/{db}"
        with redis.Redis.from_url(url) as client:
            if client.eval(_CLAIM, 2, CLAIM_KEY, MARK_KEY, owner, CLAIM_SECONDS):
                return url
    raise RuntimeError(f"no free Redis database among 1..15 at {base}")


def reset_redis(url: str) -> None:
    """Empty a claimed database but keep the claim (never FLUSHDB it directly)."""
    with redis.Redis.from_url(url) as client:
        owner = client.get(CLAIM_KEY)
        pipe = client.pipeline(transaction=True)
        pipe.flushdb().set(CLAIM_KEY, owner or b"reset", ex=CLAIM_SECONDS).set(MARK_KEY, "1")
        pipe.execute()


def release_redis(url: str) -> None:
    """Flush the database and give up the claim."""
    with redis.Redis.from_url(url) as client:
        client.flushdb()


@contextmanager
def postgres_database() -> Iterator[str]:
    """Create a fresh PostgreSQL database; yield its SQLAlchemy URL; drop it at exit."""
    base = make_url(os.environ.get("CONVEYOR_TEST_POSTGRES_URL", POSTGRES_BASE))
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"conveyor_test_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(drivername="postgresql+psycopg", database=name).render_as_string(
            hide_password=False
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
