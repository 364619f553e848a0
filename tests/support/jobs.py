"""Running the jobs Conveyor queued, in the test's process, as RQ workers with RQ's scheduler
would: each queued job in turn; one that raised again at once while its `Retry` has tries
left (its wait skipped: RQ's backoff is RQ's, not ours to test); one scheduled for later moved
to its queue once due."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import redis
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import import_attribute

QUEUES = ("notify", "builds", "deploys")


def run_jobs(queues: redis.Redis, *, only: Iterable[str] | None = None,
             timeout: float = 60, expected: type[Exception] = Exception,
             before_wait: Callable[[], None] | None = None) -> list[str]:
    """Run queued jobs until none is left, none due later either. `only`: the job functions
    to run (dotted names); others are dropped. Errors of type `expected` that RQ would retry
    are returned; any other exception, or one with no tries left, fails the test.
    `before_wait` is called whenever only jobs scheduled for later are left."""
    wanted = set(only) if only is not None else None
    errors: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job_id, queue = _next_queued(queues)
        if job_id is not None:
            errors += _run(queues, queue, job_id, wanted, expected)
            continue
        due = _next_scheduled(queues)
        if due is None:
            return errors
        if before_wait:
            before_wait()
        queue, job_id, at = due
        time.sleep(max(0.0, at - time.time()))  # the scheduler's due time, not a guess
        queues.zrem(ScheduledJobRegistry(queue, connection=queues).key, job_id)
        queues.rpush(f"rq:queue:{queue}", job_id)
    raise AssertionError(f"jobs still queued after {timeout} s")


def _next_queued(queues: redis.Redis) -> tuple[str | None, str]:
    for queue in QUEUES:
        raw = queues.lpop(f"rq:queue:{queue}")
        if raw is not None:
            return raw.decode(), queue
    return None, ""


def _next_scheduled(queues: redis.Redis) -> tuple[str, str, float] | None:
    found = []
    for queue in QUEUES:
        key = ScheduledJobRegistry(queue, connection=queues).key
        found += [(queue, job.decode(), due) for job, due in
                  queues.zrange(key, 0, 0, withscores=True)]
    return min(found, key=lambda item: item[2]) if found else None


def _run(queues: redis.Redis, queue: str, job_id: str, wanted: set[str] | None,
         expected: type[Exception]) -> list[str]:
    job = Job.fetch(job_id, connection=queues, serializer=JSONSerializer)
    if wanted is not None and job.func_name not in wanted:
        return []
    try:
        import_attribute(job.func_name)(*job.args, **job.kwargs)
    except expected as exc:
        assert job.retry is not None and job.retries_left, f"{job_id} would not be retried: {exc}"
        job.retries_left -= 1
        job.save()
        queues.rpush(f"rq:queue:{queue}", job_id)
        return [str(exc)]
    return []
