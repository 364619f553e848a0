"""The RQ worker class every `conveyor worker` process runs: RQ's own, made to stop promptly.

rq 3.0 stops its pub/sub thread on shutdown with redis-py's `PubSubWorkerThread.stop()`,
which since redis-py 8 waits for the thread to end. A thread caught between two reads first
waits out its `sleep_time`, which RQ sets to 60 s: about every other SIGTERM then took a
minute to end an idle worker, past the grace period of Docker (10 s) and of most process
managers, which then kill it. Waking every second bounds that wait to a second.
"""

from __future__ import annotations

from rq import Worker as _RQWorker

__all__ = ["Worker"]

PUBSUB_WAKE = 1.0  # seconds between the pub/sub thread's looks at whether it should stop


class Worker(_RQWorker):
    """RQ's worker, whose pub/sub thread (RQ's commands: stop a job, shut down) wakes
    every PUBSUB_WAKE seconds instead of every 60."""

    def subscribe(self) -> None:
        self.log.info("Worker %s: subscribing to channel %s", self.name,
                      self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_WAKE, daemon=True,
            exception_handler=self._pubsub_exception_handler)
