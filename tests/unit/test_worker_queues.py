"""`conveyor worker [QUEUE...]`: which RQ workers serve which queues."""

from __future__ import annotations

from app.cli.processes import worker_argvs as _worker_argvs


def queues(argv: list[str]) -> list[str]:
    return [word for word in argv[argv.index("rq-worker") + 1:] if not word.startswith("--")]


def test_by_default_every_queue_and_one_more_worker_on_notify_alone() -> None:
    assert [queues(argv) for argv in _worker_argvs(2)] == [
        ["deploys", "builds", "notify"], ["deploys", "builds", "notify"], ["notify"]]
    assert all(argv[-1] == "--with-scheduler" for argv in _worker_argvs(2))


def test_named_queues_only_and_notify_alone_only_beside_others() -> None:
    assert [queues(argv) for argv in _worker_argvs(1, ["builds"])] == [["builds"]]
    assert [queues(argv) for argv in _worker_argvs(2, ["notify", "deploys"])] == [
        ["deploys", "notify"], ["deploys", "notify"], ["notify"]]
    assert [queues(argv) for argv in _worker_argvs(1, ["notify"])] == [["notify"]]
