"""Rows of a history for read-side tests: builds and deployments as the pipeline leaves them."""

from __future__ import annotations

from datetime import datetime

from app.context import Context
from app.models import Build, Deployment

SHA = "a" * 40
# The pipeline these rows belong to: staging, then production with manual approval.
PIPELINE = """\
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${WEBHOOK_SECRET}
    build: {artifact: dist}
    environments:
      staging: {branches: [main], hosts: [local], path: /srv/shop}
      production: {promote_from: staging, approval: manual, hosts: [local], path: /srv/prod}
"""


def add_build(ctx: Context, sha: str = SHA, state: str = "succeeded",
              committed_at: datetime | None = None) -> int:
    """A build of `sha` in `state` (with an artifact when it succeeded); its id."""
    with ctx.db.session() as session:
        build = Build(project="shop", sha=sha, ref="refs/heads/main", repository="acme/shop",
                      clone_url="", settings_hash=sha[:8], state=state,
                      artifact_path="/nowhere.tar.gz" if state == "succeeded" else None,
                      artifact_sha256="f" * 64 if state == "succeeded" else None,
                      artifact_size=10, committed_at=committed_at)
        session.add(build)
        session.flush()
        return build.id


def add_deployment(ctx: Context, build_id: int, environment: str = "staging",
                   state: str = "succeeded", **values: object) -> int:
    """A deployment of the build to `environment` in `state` (more columns in `values`)."""
    with ctx.db.session() as session:
        build = session.get(Build, build_id)
        assert build is not None
        deployment = Deployment(project="shop", environment=environment,
                                trigger=f"test:{build_id}:{environment}:{values}",
                                build_id=build_id, sha=build.sha, ref=build.ref, state=state,
                                **values)
        session.add(deployment)
        session.flush()
        return deployment.id
