"""Redis and the RQ queues, addressed by name so that `app` never imports `workers`."""

from __future__ import annotations

from datetime import timedelta

from redis import Redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.serializers import JSONSerializer

QUEUES = ("builds", "deploys", "notify")
# Failed jobs are kept a week for inspection, not RQ's default year.
FAILURE_TTL = 7 * 24 * 3600


def connect(url: str) -> Redis:
    """A Redis client with explicit timeouts (redis-py 8 changed the defaults)."""
    return Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5,
                          health_check_interval=30)


class Jobs:
    """Enqueues jobs by dotted function name on Conveyor's queues, JSON-serialised."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._queues = {name: Queue(name, connection=redis, serializer=JSONSerializer)
                        for name in QUEUES}

    def enqueue(self, queue: str, func: str, *args: object, job_id: str, timeout: int,
                retry: Retry | None = None, delay: float = 0, unique: bool = True) -> bool:
        """Queue `func(*args)` once under `job_id` (after `delay` seconds, through RQ's
        scheduler, when given); False when that job exists already. `unique=False` is for
        a job id no other caller can have queued: RQ's writes go in one round trip, with no
        check."""
        options = {"args": args, "job_id": job_id, "job_timeout": timeout, "result_ttl": 3600,
                   "failure_ttl": FAILURE_TTL, "retry": retry, "unique": unique}
        try:
            if delay > 0:
                self._queues[queue].enqueue_in(timedelta(seconds=delay), func, **options)
            elif not unique:  # all of RQ's writes in one round trip
                with self.redis.pipeline() as pipe:
                    self._queues[queue].enqueue(func, pipeline=pipe, **options)
                    pipe.execute()
            else:
                self._queues[queue].enqueue(func, **options)
        except DuplicateJobError:
            return False
        return True

    def depths(self) -> dict[str, tuple[int, int]]:
        """Each queue's jobs (waiting now, scheduled for later), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for queue in self._queues.values():
            pipe.llen(queue.key)
            pipe.zcard(queue.scheduled_job_registry.key)
        counts = pipe.execute()
        return {name: (counts[2 * n], counts[2 * n + 1]) for n, name in enumerate(self._queues)}

    def ping(self) -> None:
        """Raise when Redis cannot be reached."""
        self.redis.ping()
