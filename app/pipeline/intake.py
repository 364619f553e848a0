"""Intake: act on one verified delivery, queue its work once, record it, answer (SPEC §4).

A delivery id is recorded as done only after its work is queued: a redelivery after a crash
or an outage is processed again (the rows it finds are reused and re-queueing is idempotent),
and one after success answers the first answer with `"duplicate": true`. Refused deliveries
and ones that met an outage are recorded too, never as done.

The request path is kept short because forges wait for it and send in bursts: one database
connection; one insert that makes the build of a commit never seen, unless the delivery is
done already, and one per deployment (the database's uniqueness settles races); one job
queued (`workers.intake.dispatch` queues the build and the pending statuses); one insert
that records the delivery. On PostgreSQL the inserts are one statement (one round trip):
the build, its deployments and the delivery recorded as done, in CTEs; should the job then
fail to be queued, the delivery's record is taken back, so that its redelivery does the
work. Anything else (a redelivery after an outage, a commit built
before, the same push from a second hook) takes the slow way through the pipeline's own
find-or-create functions, which hold the policy (rebuilds, reuse, `paths:`).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import Connection, Table, bindparam, cast, delete, exists, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from app import config as cfg
from app.context import Context
from app.events import ZERO_SHA, Event, Ignored, PullRequest, Push
from app.models import Build, Delivery, Deployment, utcnow
from app.pipeline import paths
from app.pipeline.builds import BUILD_KEY, find_or_create_build, new_build, queue_work
from app.pipeline.deployments import DEPLOYMENT_KEY, find_or_create_deployment, push_deployment
from app.pipeline.report import remember_forge_project
from app.pipeline.rules import (
    changes_question,
    environments_for,
    pull_request_refusal,
)

log = logging.getLogger(__name__)
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Answer:
    """The HTTP answer to a delivery."""

    status: int
    body: dict[str, Any]


@dataclass
class Received:
    """What is known of a delivery so far; recorded with its answer, whatever the answer."""

    provider: str
    started: float
    delivery_id: str = ""
    event: str = ""
    project: str | None = None
    repository: str | None = None
    ref: str | None = None
    sha: str | None = None


@dataclass(frozen=True)
class _Work:
    """What a push or pull request asks for: a build of one commit, deployments of it."""

    ref: str
    sha: str
    repository: str
    clone_url: str
    question: tuple[str, str] | None  # `paths:` (app/pipeline/paths.py)
    environments: tuple[cfg.Environment, ...] = ()
    push: Push | None = None
    forge_project: str = ""


def receive(ctx: Context, received: Received, project: cfg.Project | None,
            event: Event) -> Answer:
    """Act on one verified delivery: queue its work once, record it as done, and answer."""
    # Each statement commits on its own: the database's uniqueness, not a transaction, keeps
    # the work single, and a delivery cut short is finished by its redelivery.
    with ctx.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        decided = _decide(received, project, event)
        if isinstance(decided, Answer) or project is None:
            answer = decided if isinstance(decided, Answer) else _ignored(received, "no project")
            return _done_answer(conn, received) or _record_done(conn, received, answer)
        return _receive_work(ctx, conn, received, project, decided)


def dispatch(ctx: Context, build_id: int, deployment_ids: list[int],
             forge_project: str = "") -> None:
    """Queue a delivery's new work: the build (or the deployments of a commit built before)
    and the pending commit statuses, and remember the forge's id of the project (GitLab
    addresses it so). The `workers.intake.dispatch` job, off the request path; each step has
    a deterministic job id, so running it twice queues nothing twice."""
    with ctx.db.session() as session:
        build = session.get(Build, build_id)
        deployments = list(session.scalars(select(Deployment).where(
            Deployment.id.in_(deployment_ids)).order_by(Deployment.id)))
    if build is not None and forge_project:
        remember_forge_project(ctx, build.project, forge_project)
    if build is not None:
        queue_work(ctx, build, deployments)


def refuse(ctx: Context, received: Received, status: int, message: str) -> Answer:
    """Answer a delivery refused (4xx) and record it, never as done; a later valid
    redelivery of the same id is processed."""
    answer = Answer(status, {"error": message})
    record_attempt(ctx, received, answer)
    return answer


def record_attempt(ctx: Context, received: Received, answer: Answer) -> None:
    """Record a delivery that was not done (refused, or met an outage); best effort."""
    try:
        with ctx.db.engine.begin() as conn:
            conn.execute(_statement(conn, "delivery"), _row(received, answer, done=False))
    except SQLAlchemyError as exc:
        log.warning("delivery %r not recorded: %s", received.delivery_id, type(exc).__name__)


# -- acting -------------------------------------------------------------------------------------


def _decide(received: Received, project: cfg.Project | None, event: Event) -> Answer | _Work:
    """What the delivery asks for: work, or an answer saying why there is none (no I/O)."""
    received.repository = event.repository or received.repository
    if isinstance(event, Ignored) or project is None:
        return _ignored(received, event.reason if isinstance(event, Ignored) else "no project")
    if isinstance(event, PullRequest):
        received.ref, received.sha = event.ref, event.head_sha
        refusal = pull_request_refusal(project, event)
        if refusal is not None:
            return _ignored(received, refusal)
        return _Work(ref=event.ref, sha=event.head_sha, repository=event.repository,
                     clone_url=event.clone_url, forge_project=event.forge_project,
                     question=changes_question(project, event.ref, ZERO_SHA, event.base_ref))
    received.ref, received.sha = event.ref, event.after
    targets = environments_for(project, event)
    if isinstance(targets, str):
        return _ignored(received, targets)
    return _Work(ref=event.ref, sha=event.after, repository=event.repository,
                 clone_url=event.clone_url, environments=tuple(targets), push=event,
                 forge_project=event.forge_project,
                 question=changes_question(project, event.ref, event.before,
                                           event.default_branch))


def _ignored(received: Received, reason: str) -> Answer:
    return Answer(200, {"delivery": received.delivery_id, "ignored": reason})


def _receive_work(ctx: Context, conn: Connection, received: Received, project: cfg.Project,
                  work: _Work) -> Answer:
    """Queue a build (and deployments, for a push) once, however often the work is asked for."""
    if conn.dialect.name == "postgresql":
        claimed = _claim_and_record(conn, received, project, work)
        if claimed is not None:  # the delivery is recorded as done already
            build_id, deployment_ids = claimed
            _queue_dispatch_or_take_back(ctx, conn, received, build_id, deployment_ids,
                                         work.forge_project)
            return _queued(received, build_id, deployment_ids)
    else:
        claimed = _claim_new(conn, received, project, work)
        if claimed is not None:  # the common case: a commit never seen, a delivery never done
            build_id, deployment_ids = claimed
            _queue_dispatch(ctx, build_id, deployment_ids, work.forge_project)
            return _record_done(conn, received, _queued(received, build_id, deployment_ids))
    seen = _done_answer(conn, received)
    if seen is not None:
        return seen
    twin = conn.scalar(_statement(conn, "twin"), {
        "sha": work.sha, "project": project.name, "ref": work.ref})
    if twin is not None:  # two hooks, one push
        return _record_done(conn, received, Answer(200, {
            "delivery": received.delivery_id, "duplicate": True,
            "builds": twin.get("builds", []), "deployments": twin.get("deployments", [])}))
    build, deployments = _find_or_create(ctx, project, work)
    queue_work(ctx, build, deployments)
    return _record_done(conn, received, _queued(received, build.id, [d.id for d in deployments]))


def _queued(received: Received, build_id: int, deployment_ids: list[int]) -> Answer:
    return Answer(202, {"delivery": received.delivery_id, "builds": [build_id],
                        "deployments": deployment_ids})


def _queue_dispatch(ctx: Context, build_id: int, deployment_ids: list[int],
                    forge_project: str) -> None:
    """One job on `notify` queues the new work and its pending statuses: one enqueue in the
    request however many environments, as light as the least a webhook intake can do. It is
    retried; like the build job itself, it only needs Redis and the database to be up."""
    from rq import Retry

    # Only the delivery that made the build gets here: no other can have queued its job.
    ctx.jobs.enqueue("notify", "workers.intake.dispatch", build_id, deployment_ids,
                     forge_project, job_id=f"dispatch-{build_id}-1", timeout=120,
                     retry=Retry(max=8, interval=[1, 5, 15, 60, 300, 900, 1800, 3600]),
                     unique=False)


def _queue_dispatch_or_take_back(ctx: Context, conn: Connection, received: Received,
                                 build_id: int, deployment_ids: list[int],
                                 forge_project: str) -> None:
    """Queue the dispatch job of a delivery recorded as done already; if Redis cannot take
    it, the record is taken back (the route records the attempt as not done), so that a
    redelivery finds the rows and queues the work."""
    try:
        _queue_dispatch(ctx, build_id, deployment_ids, forge_project)
    except RedisError:
        try:
            conn.execute(_statement(conn, "undone"), {
                "provider": received.provider, "delivery_id": received.delivery_id})
        except SQLAlchemyError as exc:
            log.error("delivery %r is recorded as done but its work was not queued (%s):"
                      " retry build %s by hand", received.delivery_id, type(exc).__name__,
                      build_id)
        raise


def _find_or_create(ctx: Context, project: cfg.Project,
                    work: _Work) -> tuple[Build, list[Deployment]]:
    """The slow way, for a commit seen before: the pipeline's find-or-create functions."""
    build, new = find_or_create_build(ctx, project, sha=work.sha, ref=work.ref,
                                      repository=work.repository, clone_url=work.clone_url)
    build, _revived = paths.ask(ctx, project, build, created=new, question=work.question)
    if work.push is None:
        return build, []
    return build, [find_or_create_deployment(ctx, project, env, build, work.push)[0]
                   for env in work.environments]


# -- claiming the work of a new commit ----------------------------------------------------------


def _claim_new(conn: Connection, received: Received, project: cfg.Project,
               work: _Work) -> tuple[int, list[int]] | None:
    """The ids of the build and deployments made for a commit never seen, for a delivery never
    done; None otherwise (the caller takes the slow way). One insert checks both; uniqueness
    settles races. A new build means no other delivery of this work is done: it would have
    made it. The rows' values come from the same definitions the pipeline's find-or-create
    functions use (`new_build`, `push_deployment`)."""
    since, base = work.question or (None, None)
    build_id = conn.scalar(_statement(conn, "build"), {
        **new_build(project, sha=work.sha, ref=work.ref, repository=work.repository,
                    clone_url=work.clone_url),
        "changes_since": since, "changes_base": base or None, "provider": received.provider,
        "delivery_id": received.delivery_id})
    if build_id is None:
        return None
    deployment_ids = []
    for env in work.environments if work.push is not None else ():
        deployment_id = conn.scalar(_statement(conn, "deployment"),
                                    push_deployment(project, env, build_id, work.push))
        if deployment_id is None:  # cannot be, for a new build; the slow way copes if it is
            return None
        deployment_ids.append(deployment_id)
    return build_id, deployment_ids


def _claim_and_record(conn: Connection, received: Received, project: cfg.Project,
                      work: _Work) -> tuple[int, list[int]] | None:
    """PostgreSQL: `_claim_new` and `_record_done` in one statement. The delivery is
    recorded (done, answered 202) only when the build and every deployment were made by it;
    None otherwise (the caller takes the slow way, as for `_claim_new`)."""
    deployments = [push_deployment(project, env, 0, work.push)
                   for env in (work.environments if work.push is not None else ())]
    since, base = work.question or (None, None)
    values = {
        **new_build(project, sha=work.sha, ref=work.ref, repository=work.repository,
                    clone_url=work.clone_url),
        "changes_since": since, "changes_base": base or None,
        **_defaults(Build.__table__, "b_"),
        **{f"d_{name}": [d[name] for d in deployments] for name in _DEPLOYMENT_ARRAYS},
        **_defaults(Deployment.__table__, "d_"),
        "expected": len(deployments),
        **{f"r_{key}": value for key, value in _row(
            received, Answer(202, {}), done=True).items() if key not in ("answer", "done")},
        "provider": received.provider, "delivery_id": received.delivery_id}
    try:
        found = conn.execute(_statement(conn, "claim_and_record"), values).one_or_none()
    except IntegrityError:  # the same delivery id done meanwhile with other work
        return None
    if found is None or not found.recorded:
        return None
    return found.build_id, list(found.deployment_ids or [])


# The columns intake gives a new build; the model's defaults give the others (queued, ...).
_BUILD_COLUMNS = ("project", "sha", "settings_hash", "ref", "repository", "clone_url",
                  "changes_since", "changes_base")


@cache
def _statements(dialect: str) -> dict[str, Any]:
    """The request path's statements, built once per database kind (compiled once, too)."""
    insert = (postgresql if dialect == "postgresql" else sqlite).insert
    builds, deployments, deliveries = Build.__table__, Deployment.__table__, Delivery.__table__
    columns = [builds.c[name] for name in _BUILD_COLUMNS]
    return {
        "twin": select(deliveries.c.answer).where(
            deliveries.c.done, deliveries.c.sha == bindparam("sha"),
            deliveries.c.project == bindparam("project"), deliveries.c.ref == bindparam("ref"),
            deliveries.c.status_code == 202).limit(1),
        "done": select(deliveries.c.answer).where(
            deliveries.c.provider == bindparam("provider"),
            deliveries.c.delivery_id == bindparam("delivery_id"), deliveries.c.done),
        "build": insert(builds).from_select(  # the model's defaults are added to both
            [column.key for column in columns],
            select(*[_value(column, dialect) for column in columns]).where(~exists().where(
                deliveries.c.provider == bindparam("provider"),
                deliveries.c.delivery_id == bindparam("delivery_id"), deliveries.c.done)),
        ).on_conflict_do_nothing(
            index_elements=list(BUILD_KEY)).returning(builds.c.id),
        "deployment": insert(deployments).on_conflict_do_nothing(
            index_elements=list(DEPLOYMENT_KEY)).returning(deployments.c.id),
        "delivery": insert(deliveries),
        "undone": delete(deliveries).where(
            deliveries.c.provider == bindparam("provider"),
            deliveries.c.delivery_id == bindparam("delivery_id"), deliveries.c.done),
        **({"claim_and_record": _claim_and_record_statement()} if dialect == "postgresql"
           else {}),
    }


# A push's deployments differ by these; the build's id comes from the statement itself.
_DEPLOYMENT_ARRAYS = ("project", "environment", "trigger", "sha", "ref")
_DELIVERY_COLUMNS = ("provider", "delivery_id", "event", "project", "repository", "ref", "sha",
                     "status_code", "reason", "received_at", "duration_ms")


def _claim_and_record_statement() -> Any:
    """One round trip on PostgreSQL: the build (unless the delivery is done), its
    deployments, and the delivery recorded as done with its answer, as data-modifying CTEs.
    Each value is cast to its column's type; the models' own defaults fill the rest."""
    builds, deployments = Build.__table__, Deployment.__table__
    build_columns = [*_BUILD_COLUMNS, *_defaults(builds, "")]
    deployment_defaults = list(_defaults(deployments, ""))
    arrays = ", ".join(f"CAST(:d_{name} AS {_pg_type(deployments, name)}[])"
                       for name in _DEPLOYMENT_ARRAYS)
    return text(f"""
WITH build AS (
    INSERT INTO builds ({", ".join(build_columns)})
    SELECT {", ".join(_pg_param(builds, name, "" if name in _BUILD_COLUMNS else "b_")
                      for name in build_columns)}
    WHERE NOT EXISTS (SELECT 1 FROM deliveries WHERE provider = CAST(:provider AS VARCHAR)
                      AND delivery_id = CAST(:delivery_id AS VARCHAR) AND done)
    ON CONFLICT ({", ".join(BUILD_KEY)}) DO NOTHING
    RETURNING id
), deployment AS (
    INSERT INTO deployments ({", ".join((*_DEPLOYMENT_ARRAYS, "build_id", *deployment_defaults))})
    SELECT {", ".join(f"v.{name}" for name in _DEPLOYMENT_ARRAYS)}, build.id,
           {", ".join(_pg_param(deployments, name, "d_") for name in deployment_defaults)}
    FROM build, unnest({arrays})
        WITH ORDINALITY AS v({", ".join(_DEPLOYMENT_ARRAYS)}, n)
    ORDER BY v.n
    ON CONFLICT ({", ".join(DEPLOYMENT_KEY)}) DO NOTHING
    RETURNING id
), delivery AS (
    INSERT INTO deliveries ({", ".join(_DELIVERY_COLUMNS)}, answer, done)
    SELECT {", ".join(_pg_param(Delivery.__table__, name, "r_") for name in _DELIVERY_COLUMNS)},
           json_build_object('delivery', CAST(:delivery_id AS TEXT),
                             'builds', json_build_array(build.id),
                             'deployments', COALESCE((SELECT json_agg(id ORDER BY id)
                                                      FROM deployment), '[]'::json)),
           true
    FROM build
    WHERE (SELECT count(*) FROM deployment) = CAST(:expected AS INTEGER)
    RETURNING id
)
SELECT build.id AS build_id,
       (SELECT array_agg(id ORDER BY id) FROM deployment) AS deployment_ids,
       EXISTS (SELECT 1 FROM delivery) AS recorded
FROM build""")  # noqa: S608 - every name above is the models', every value a parameter


def _defaults(table: Table, prefix: str) -> dict[str, Any]:
    """The model's Python-side defaults (evaluated now) of the columns intake leaves to it,
    named `prefix` + column."""
    return {f"{prefix}{key}": default.arg(None) if default.is_callable else default.arg
            for key, default in _defaulted(table)}


@cache
def _defaulted(table: Table) -> tuple[tuple[str, Any], ...]:
    given = {*_BUILD_COLUMNS, *_DEPLOYMENT_ARRAYS, "build_id"}
    return tuple((column.key, column.default) for column in table.c
                 if not column.primary_key and column.default is not None
                 and column.key not in given)


def _pg_param(table: Table, name: str, prefix: str) -> str:
    return f"CAST(:{prefix}{name} AS {_pg_type(table, name)})"


def _pg_type(table: Table, name: str) -> str:
    return str(table.c[name].type.compile(dialect=postgresql.dialect()))


def _value(column: Any, dialect: str) -> Any:
    """A parameter for `column` in INSERT ... SELECT; PostgreSQL is told its type."""
    param = bindparam(column.key, type_=column.type)
    return cast(param, column.type) if dialect == "postgresql" else param


def _statement(conn: Connection, name: str) -> Any:
    return _statements(conn.dialect.name)[name]


# -- the record ---------------------------------------------------------------------------------


def _done_answer(conn: Connection, received: Received) -> Answer | None:
    """The first answer to this delivery id, if it is done, marked as a duplicate."""
    answer = conn.scalar(_statement(conn, "done"), {
        "provider": received.provider, "delivery_id": received.delivery_id})
    return None if answer is None else Answer(200, {**answer, "duplicate": True})


def _record_done(conn: Connection, received: Received, answer: Answer) -> Answer:
    """Record the delivery as done; a concurrent twin that got there first wins."""
    try:
        conn.execute(_statement(conn, "delivery"), _row(received, answer, done=True))
    except IntegrityError:
        return _done_answer(conn, received) or answer
    return answer


def _row(received: Received, answer: Answer, *, done: bool) -> dict[str, Any]:
    body = answer.body
    reason = body.get("ignored") or body.get("error")
    if reason is None and body.get("duplicate"):
        reason = "the same push arrived under another delivery id"
    return {"provider": received.provider, "delivery_id": _clip(received.delivery_id, 200),
            "event": _clip(received.event, 100), "project": received.project,
            "repository": _clip(received.repository, 400) or None,
            "ref": _clip(received.ref, 400) or None, "sha": _clip(received.sha, 64) or None,
            "status_code": answer.status, "reason": reason, "answer": body, "done": done,
            "received_at": utcnow(),
            "duration_ms": round((time.monotonic() - received.started) * 1000)}


def _clip(value: str | None, size: int) -> str:
    """Text fit for a column: control characters replaced, cut to the column's size."""
    return _UNPRINTABLE.sub("?", value or "")[:size]
