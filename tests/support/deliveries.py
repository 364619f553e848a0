"""Webhook deliveries as each forge sends them: headers, signatures, body formats."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from app import pipeline
from app.context import Context
from tests.support.conveyor import SECRET

FIXTURES = Path(__file__).parent.parent / "fixtures"
FORM_TYPE = "application/x-www-form-urlencoded"


def fixture_bytes(name: str) -> bytes:
    """A forge payload from tests/fixtures, byte for byte as stored."""
    return (FIXTURES / name).read_bytes()


def fixture(name: str) -> dict[str, Any]:
    return json.loads(fixture_bytes(name))


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github(body: bytes, event: str, delivery: str, secret: str | None = SECRET,
           content_type: str = "application/json") -> dict[str, str]:
    """GitHub's headers (github/docs example delivery); no signature when `secret` is None."""
    headers = {"Content-Type": content_type, "X-GitHub-Event": event,
               "X-GitHub-Delivery": delivery, "User-Agent": "GitHub-Hookshot/044aadd",
               "X-GitHub-Hook-ID": "292430182",
               "X-GitHub-Hook-Installation-Target-Type": "repository"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = f"sha256={hmac_hex(secret, body)}"
    return headers


def gitlab(event: str, delivery: str, token: str | None = SECRET,
           uuid_only: bool = False) -> dict[str, str]:
    """GitLab's headers (WebHookService#build_headers); `uuid_only` as before GitLab 17.4."""
    headers = {"Content-Type": "application/json", "User-Agent": "GitLab/17.5.0",
               "X-Gitlab-Event": event, "X-Gitlab-Event-UUID": f"event-{delivery}",
               "X-Gitlab-Webhook-UUID": f"request-{delivery}",
               "X-Gitlab-Instance": "https://gitlab.example.com"}
    if uuid_only:
        headers["X-Gitlab-Event-UUID"] = delivery
    else:
        headers["Idempotency-Key"] = delivery
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return headers


def gitea(body: bytes, event: str, delivery: str, secret: str | None = SECRET,
          content_type: str = "application/json", forgejo: bool = False) -> dict[str, str]:
    """Gitea's headers (services/webhook/deliver.go): Gitea, Gogs and GitHub names at once;
    Forgejo sends X-Forgejo-* as well. Without a secret the signatures are empty."""
    signature = hmac_hex(secret, body) if secret is not None else ""
    headers = {"Content-Type": content_type, "X-Gitea-Delivery": delivery,
               "X-Gitea-Event": event, "X-Gitea-Event-Type": event,
               "X-Gitea-Signature": signature, "X-Gogs-Delivery": delivery,
               "X-Gogs-Event": event, "X-Gogs-Signature": signature,
               "X-Hub-Signature-256": f"sha256={signature}", "X-GitHub-Delivery": delivery,
               "X-GitHub-Event": event}
    if forgejo:
        headers |= {"X-Forgejo-Delivery": delivery, "X-Forgejo-Event": event,
                    "X-Forgejo-Signature": signature}
    return headers


def signed(provider: str, body: bytes, event: str, delivery: str,
           secret: str | None = SECRET) -> dict[str, str]:
    """The headers `provider` sends with `body`, signed (or carrying the token) with `secret`."""
    if provider == "github":
        return github(body, event, delivery, secret)
    if provider == "gitlab":
        return gitlab(event, delivery, secret)
    return gitea(body, event, delivery, secret)


def form(payload: bytes) -> bytes:
    """The form-encoded body GitHub and Gitea send when the hook's content type is form."""
    return urlencode({"payload": payload.decode()}).encode()


def form_bytes(payload: bytes) -> bytes:
    """A form body of `payload=` carrying any bytes, percent-encoded (not UTF-8 perhaps)."""
    return urlencode({"payload": payload}).encode()


def run_dispatch_jobs(ctx: Context, queues: redis.Redis) -> list[str]:
    """Do what a `notify` worker does with intake's dispatch jobs: run each, in queue order;
    the ids of the jobs run."""
    ran = []
    for raw in queues.lrange("rq:queue:notify", 0, -1):
        job_id = raw.decode()
        job = Job.fetch(job_id, connection=queues, serializer=JSONSerializer)
        if job.func_name != "workers.intake.dispatch":
            continue
        pipeline.dispatch(ctx, *job.args)
        queues.lrem("rq:queue:notify", 1, job_id)
        ran.append(job_id)
    return ran
