"""The history: deliveries, builds, deployments, per-host results and log lines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """`moment` with its zone: SQLite hands datetimes back without it; they were stored as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Delivery(Base):
    """One webhook request as the forge sent it, and the answer it got."""

    __tablename__ = "deliveries"
    # A delivery id is done once (its work queued, its answer recorded); refused attempts and
    # ones that met a service outage are recorded too, and never block a later redelivery.
    __table_args__ = (
        Index("uq_deliveries_done", "provider", "delivery_id", unique=True,
              sqlite_where=text("done"), postgresql_where=text("done")),
        Index("ix_deliveries_project_id", "project", "id"),
        Index("ix_deliveries_sha", "sha"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    delivery_id: Mapped[str] = mapped_column(String(200))
    event: Mapped[str] = mapped_column(String(100))
    project: Mapped[str | None] = mapped_column(String(200))
    repository: Mapped[str | None] = mapped_column(String(400))
    ref: Mapped[str | None] = mapped_column(String(400))
    sha: Mapped[str | None] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[bool] = mapped_column(default=False, server_default=false())


class Build(Base):
    """One commit turned into one artifact; done once per (project, sha, build settings)."""

    __tablename__ = "builds"
    __table_args__ = (UniqueConstraint("project", "sha", "settings_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project: Mapped[str] = mapped_column(String(200))
    sha: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(String(400))
    repository: Mapped[str] = mapped_column(String(400))
    clone_url: Mapped[str] = mapped_column(Text)
    settings_hash: Mapped[str] = mapped_column(String(64))
    # `paths:` (app/pipeline/paths.py): the commit the push's changes are counted from (its
    # before sha, all zeros for a new branch) and the branch a new branch is compared with.
    # NULL or "" means built whatever changed (a manual deploy, a tag, two pushes at once).
    changes_since: Mapped[str | None] = mapped_column(String(64))
    changes_base: Mapped[str | None] = mapped_column(String(400))
    # A failed build, or one whose artifact was pruned, runs again as a new attempt.
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    state: Mapped[str] = mapped_column(String(20), default="queued")
    error: Mapped[str | None] = mapped_column(Text)
    artifact_path: Mapped[str | None] = mapped_column(Text)
    artifact_sha256: Mapped[str | None] = mapped_column(String(64))
    artifact_size: Mapped[int | None] = mapped_column(BigInteger)
    # The commit's committer time, read from git by the build (DORA's lead time starts there).
    committed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    deployments: Mapped[list[Deployment]] = relationship(back_populates="build")


class Deployment(Base):
    """One build's artifact put live on every host of one environment."""

    __tablename__ = "deployments"
    # A push (trigger "push:<ref>:<sha>") makes one deployment per environment, however often
    # it is delivered; a promotion ("promote:<source id>") one per source deployment.
    __table_args__ = (UniqueConstraint("project", "environment", "trigger"),
                      Index("ix_deployments_environment_state", "project", "environment",
                            "state"))

    id: Mapped[int] = mapped_column(primary_key=True)
    project: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(200))
    trigger: Mapped[str] = mapped_column(String(600))
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id"))
    sha: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(String(400))
    state: Mapped[str] = mapped_column(String(20), default="queued")
    release_id: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # deploy (a push or by hand), promotion, rollback or retry (SPEC §7).
    kind: Mapped[str] = mapped_column(String(20), default="deploy", server_default="deploy")
    # The deployment this one was promoted from, or retries.
    source_id: Mapped[int | None]
    # A rollback's release to put back, and the release it replaces (marked bad once done).
    target_release: Mapped[str | None] = mapped_column(String(100))
    replaces_release: Mapped[str | None] = mapped_column(String(100))
    # A retry's hosts: those that did not reach the release; None = every host.
    hosts_only: Mapped[list[str] | None] = mapped_column(JSON)
    requested_by: Mapped[str | None] = mapped_column(String(200))  # by hand: who
    approved_by: Mapped[str | None] = mapped_column(String(200))
    approved_at: Mapped[datetime | None]

    build: Mapped[Build] = relationship(back_populates="deployments")
    hosts: Mapped[list[DeploymentHost]] = relationship(
        back_populates="deployment", order_by="DeploymentHost.id")


class DeploymentHost(Base):
    """What one deployment did on one host: the step reached and the releases around it."""

    __tablename__ = "deployment_hosts"
    __table_args__ = (UniqueConstraint("deployment_id", "host"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"))
    host: Mapped[str] = mapped_column(String(300))
    state: Mapped[str] = mapped_column(String(20), default="queued")
    step: Mapped[str | None] = mapped_column(String(50))
    previous_release: Mapped[str | None] = mapped_column(String(100))
    release: Mapped[str | None] = mapped_column(String(100))
    uploaded: Mapped[bool | None]
    # Seconds each step took on this host: {"connect": 0.07, "upload": 0.4, ...}.
    timings: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    deployment: Mapped[Deployment] = relationship(back_populates="hosts")


class LogLine(Base):
    """One line of a build's or deployment's log, stored as it comes, secrets masked."""

    __tablename__ = "log_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    build_id: Mapped[int | None] = mapped_column(ForeignKey("builds.id"), index=True)
    deployment_id: Mapped[int | None] = mapped_column(ForeignKey("deployments.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    text: Mapped[str] = mapped_column(Text)


class Release(Base):
    """One release of an environment, made by one deployment: good once that deployment put
    it live everywhere, bad when it failed or was rolled back (never a rollback target)."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("project", "environment", "release_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(200))
    release_id: Mapped[str] = mapped_column(String(100))
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"))
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id"))
    sha: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    live_at: Mapped[datetime | None]
    bad: Mapped[bool] = mapped_column(default=False)
    bad_reason: Mapped[str | None] = mapped_column(Text)
    marked_bad_at: Mapped[datetime | None]


class HostRelease(Base):
    """What one host of an environment runs, as far as Conveyor knows: the release live
    there after the last deployment that reached it, and the last good release."""

    __tablename__ = "host_releases"
    __table_args__ = (UniqueConstraint("project", "environment", "host"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(200))
    host: Mapped[str] = mapped_column(String(300))
    live_release: Mapped[str | None] = mapped_column(String(100))
    last_good_release: Mapped[str | None] = mapped_column(String(100))
    deployment_id: Mapped[int | None] = mapped_column(ForeignKey("deployments.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AuditEntry(Base):
    """Who asked for what (SPEC §4): an approve, cancel, retry, rollback or manual deploy,
    written in the same transaction as the operation itself."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_project_id", "project", "id"),
                      Index("ix_audit_log_deployment_id", "deployment_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    by: Mapped[str] = mapped_column(String(200))  # the API token's name, or `cli`
    action: Mapped[str] = mapped_column(String(20))  # deploy, approve, cancel, retry, rollback
    project: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(200))
    deployment_id: Mapped[int | None] = mapped_column(ForeignKey("deployments.id"))
    detail: Mapped[str | None] = mapped_column(Text)
