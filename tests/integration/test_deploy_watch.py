"""The watch after the switch (`healthcheck.watch`) over real sshd hosts: the health check
keeps running on every host after the last batch is live, and a failure then (or a host
lost, or the lock lost) puts every host back on its previous release."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from app import pipeline
from tests.support.stage import Stage, known_releases, live, releases, revisions
from workers import deploy, deployer

# Each run of the health check leaves a line on its host; a host with `unhealthy` fails it.
CHECK = "echo checked >> ../../checks.log; test ! -e ../../unhealthy"
WATCHED = f"""
hooks: {{after_activate: ['echo "$CONVEYOR_RELEASE_ID" >> ../../after.log']}}
healthcheck: {{command: '{CHECK}', retries: 1, interval: 1s, timeout: 5s, watch: 3s}}
"""


def checks(s: Stage) -> list[int]:
    """How many times the health check ran on each host."""
    return [len((h.root / "checks.log").read_text().splitlines()) for h in s.fleet.hosts]


def watching(s: Stage, deployment_id: int) -> Callable[[], bool]:
    """Whether every host of the deployment is in its watch (every host live)."""
    return lambda: {h.step for h in s.state(deployment_id).hosts} == {"watch"}


def start(s: Stage, content: str) -> tuple[int, threading.Thread]:
    """A deployment running in a thread of its own, as a worker runs it."""
    deployment_id = s.deployment(content)
    runner = threading.Thread(target=deploy.run, args=(deployment_id,))
    runner.start()
    return deployment_id, runner


def test_a_health_check_failing_during_the_watch_puts_every_host_back(
        stage: Callable[..., Stage]) -> None:
    s = stage(3, settings=WATCHED)
    first = s.deploy("one")
    assert first.state == "succeeded", first.error
    deployment_id, runner = start(s, "two")
    s.wait_for(watching(s, deployment_id), what=lambda: str(s.log(deployment_id)))
    (s.fleet.hosts[1].root / "unhealthy").touch()  # the new release falls ill once live
    runner.join()

    failed = s.state(deployment_id)
    assert failed.state == "failed"
    assert failed.error and failed.error.startswith("watch failed after ")
    assert f", every host put back: {s.fleet.hosts[1].spec}: healthcheck failed: the health" \
        " check failed 1 time(s), last: exit status 1" in failed.error
    old, new = first.release_id, failed.release_id
    assert live(s.fleet) == [f"releases/{old}"] * 3
    assert releases(s.fleet) == [[old]] * 3  # the new release removed everywhere
    assert [h.state for h in failed.hosts] == ["rolled_back", "failed", "rolled_back"]
    assert {h.release for h in failed.hosts} == {old}
    for host in s.fleet.hosts:  # live, then put back, after_activate run again in the old one
        assert revisions(host)[1:] == [f"activate {new} previous={old}",
                                       f"rollback {old} previous={new}"]
        assert (host.root / "after.log").read_text().split() == [old, new, old]
    known, per_host = known_releases(s.ctx)
    assert known[new].bad and "watch failed" in (known[new].bad_reason or "")
    assert {h.live_release for h in per_host.values()} == {old}
    assert pipeline.last_good_release(s.ctx, "shop", "staging") == old


def test_a_healthy_watch_checks_every_host_every_interval_and_succeeds(
        stage: Callable[..., Stage]) -> None:
    s = stage(2, settings=WATCHED)
    started = time.monotonic()
    done = s.deploy("one")
    took = time.monotonic() - started

    assert done.state == "succeeded", done.error
    assert took >= 3  # it watched for the whole 3 s
    assert checks(s) == [1 + 3, 1 + 3]  # once in activation, then once a second for 3 s
    assert live(s.fleet) == [f"releases/{done.release_id}"] * 2
    assert [(h.state, h.step) for h in done.hosts] == [("succeeded", "live")] * 2
    assert all("watch" in h.timings for h in done.hosts)
    said = [line for line in s.log(done.id) if "of watch" in line]
    assert said == [f"[{h.spec}] healthy for 3 s of watch (3 checks)" for h in s.fleet.hosts]
    known, _per_host = known_releases(s.ctx)
    assert known[done.release_id].live_at is not None and not known[done.release_id].bad


@pytest.mark.parametrize("watch", [", watch: 0", ""])
def test_without_a_watch_the_check_runs_only_in_activation(
        stage: Callable[..., Stage], watch: str) -> None:
    s = stage(2, settings=f"healthcheck: {{command: '{CHECK}', retries: 1{watch}}}")
    done = s.deploy("one")
    assert done.state == "succeeded", done.error
    assert checks(s) == [1, 1]
    assert not any("watch" in h.timings for h in done.hosts)


def test_a_host_lost_during_the_watch_is_an_error_and_the_others_are_put_back(
        stage: Callable[..., Stage]) -> None:
    s = stage(3, settings=WATCHED.replace("watch: 3s", "watch: 60s"))
    deployment_id, runner = start(s, "one")  # a first deployment: put back is no `current`
    s.wait_for(watching(s, deployment_id), what=lambda: str(s.log(deployment_id)))
    lost = s.fleet.hosts[1]
    lost.stop()
    runner.join(timeout=30)
    assert not runner.is_alive()  # the watch ended at the host's loss, not after 60 s

    ended = s.state(deployment_id)
    new = ended.release_id
    assert ended.state == "error"  # the host, not the release, is to blame
    assert ended.error and ended.error.startswith(f"rollback failed: {lost.spec} may still run"
                                                  f" {new}")
    assert live(s.fleet) == [None, f"releases/{new}", None]
    assert [h.state for h in ended.hosts] == ["rolled_back", "error", "rolled_back"]
    known, _per_host = known_releases(s.ctx)
    assert not known[new].bad


def test_a_lock_lost_during_the_watch_puts_every_host_back(
        stage: Callable[..., Stage]) -> None:
    s = stage(2, settings=WATCHED.replace("watch: 3s", "watch: 60s"))
    deployment_id = s.deployment("one")
    order = pipeline.start_deployment(s.ctx, deployment_id)
    assert order is not None
    lock_lost = threading.Event()
    outcome: list[tuple[str, str | None]] = []
    runner = threading.Thread(target=lambda: outcome.append(
        deployer.Deployer(s.ctx, order, lock_lost).deploy()))
    runner.start()
    s.wait_for(watching(s, deployment_id), what=lambda: str(s.log(deployment_id)))
    lock_lost.set()  # as the heartbeat does when another holder has the key
    runner.join(timeout=30)

    assert not runner.is_alive()
    [(state, error)] = outcome
    assert state == "error"
    assert error and error.startswith("watch stopped after ") and error.endswith(deployer.LOCK_LOST)
    assert live(s.fleet) == [None, None]
    assert releases(s.fleet) == [[], []]
    assert checks(s)[0] < 5  # stopped at once, not after 60 rounds
