"""The deploy job over real sshd hosts: both phases, batches, hooks, health checks, the lock,
and what a failure leaves behind."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import redis
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer

from app import pipeline
from tests.support.stage import SHA, Stage, known_releases, live, releases, revisions
from workers import deploy, deployer, remote, transport

# What a hook sees, written where the test can read it back.
SHOW_ENV = ('printf "%s|%s|%s|%s|%s|%s|%s" "$CONVEYOR_PROJECT" "$CONVEYOR_ENVIRONMENT"'
            ' "$CONVEYOR_SHA" "$CONVEYOR_REF" "$CONVEYOR_RELEASE_ID" "$CONVEYOR_RELEASE_PATH"'
            ' "$CONVEYOR_PREVIOUS_RELEASE_PATH" > hook-env.txt')


# --- the happy path ---------------------------------------------------------------------------


def test_every_host_goes_live_and_a_redeploy_sends_no_bytes(stage: Callable[..., Stage]) -> None:
    s = stage(3)
    done = s.deploy("one")
    assert done.state == "succeeded", done.error
    assert live(s.fleet) == [f"releases/{done.release_id}"] * 3
    assert [(h.state, h.uploaded, h.previous_release) for h in done.hosts] == \
        [("succeeded", True, None)] * 3
    for host in s.fleet.hosts:
        assert (host.root / "current/dist/app.txt").read_text() == "one"
    artifact = next((s.fleet.hosts[0].root / ".conveyor/artifacts").glob("*.tar.gz")).stat()

    redeployed = s.deploy(build_id=done.build_id)
    assert redeployed.state == "succeeded", redeployed.error
    assert [h.uploaded for h in redeployed.hosts] == [False] * 3
    assert [h.previous_release for h in redeployed.hosts] == [done.release_id] * 3
    after = next((s.fleet.hosts[0].root / ".conveyor/artifacts").glob("*.tar.gz")).stat()
    assert (after.st_ino, after.st_mtime_ns) == (artifact.st_ino, artifact.st_mtime_ns)
    assert not any("uploaded the artifact" in line for line in s.log(redeployed.id))


def test_five_hosts_in_batches_with_shared_links_hooks_and_a_health_check(
        stage: Callable[..., Stage]) -> None:
    s = stage(5, settings=f"""
batch: 2
shared: [.env, var/uploads/]
hooks:
  before_activate: ['test -L .env && test -d var/uploads', '{SHOW_ENV}']
  after_activate: ['echo "$CONVEYOR_RELEASE_ID" >> ../../after.log']
healthcheck: {{command: 'grep -q one dist/app.txt', retries: 2, interval: 1s, timeout: 5s}}
""")
    for host in s.fleet.hosts:
        (host.root / "shared").mkdir()
        (host.root / "shared/.env").write_text("SECRET=1\n")
    first = s.deploy("one")
    assert first.state == "succeeded", first.error
    done = s.deploy("one")
    assert done.state == "succeeded", done.error

    path = s.fleet.deploy_path
    for host in s.fleet.hosts:
        release = host.root / "releases" / done.release_id
        assert os.readlink(host.root / "current") == f"releases/{done.release_id}"
        assert os.readlink(release / ".env") == f"{path}/shared/.env"
        assert os.readlink(release / "var/uploads") == f"{path}/shared/var/uploads"
        assert (host.root / "shared/var/uploads").is_dir()
        assert (release / "hook-env.txt").read_text() == "|".join([
            "shop", "staging", SHA, "refs/heads/main", done.release_id,
            f"{path}/releases/{done.release_id}", f"{path}/releases/{first.release_id}"])
        assert (host.root / "after.log").read_text().split() == \
            [first.release_id, done.release_id]
        assert revisions(host) == [f"activate {first.release_id} previous=",
                                   f"activate {done.release_id} previous={first.release_id}"]
    assert {h.state for h in done.hosts} == {"succeeded"}
    assert all({"connect", "prepare", "activate", "after_activate", "prune"} <= set(h.timings)
               for h in done.hosts)
    good, per_host = known_releases(s.ctx)
    assert good[done.release_id].live_at is not None and not good[done.release_id].bad
    assert {(h.live_release, h.last_good_release) for h in per_host.values()} == \
        {(done.release_id, done.release_id)}
    assert pipeline.last_good_release(s.ctx, "shop", "staging") == done.release_id


# --- failures in prepare ----------------------------------------------------------------------


def test_a_failing_before_activate_on_one_host_leaves_all_five_on_the_old_release(
        stage: Callable[..., Stage]) -> None:
    s = stage(5, settings="""
hooks: {before_activate: ['test ! -e ../../refuse || { echo "not on this host" >&2; exit 3; }']}
""")
    first = s.deploy("one")
    assert first.state == "succeeded", first.error
    before = releases(s.fleet)
    (s.fleet.hosts[2].root / "refuse").touch()

    failed = s.deploy("two")

    assert failed.state == "failed"
    assert failed.error and failed.error.startswith("prepare failed, no host changed:")
    assert f"{s.fleet.hosts[2].spec}: prepare failed: the before_activate hook 1 failed" \
        " with exit status 3" in failed.error
    assert live(s.fleet) == [f"releases/{first.release_id}"] * 5
    assert releases(s.fleet) == before  # the new release folders were removed everywhere
    assert [h.state for h in failed.hosts] == \
        ["canceled", "canceled", "failed", "canceled", "canceled"]
    culprit = failed.hosts[2]
    assert (culprit.previous_release, culprit.release) == (first.release_id, first.release_id)
    assert {h.release for h in failed.hosts} - {None} == {first.release_id}
    assert any(line.endswith("not on this host") for line in s.log(failed.id))
    known, per_host = known_releases(s.ctx)
    assert known[failed.release_id].bad and not known[first.release_id].bad
    assert {h.live_release for h in per_host.values()} == {first.release_id}


def test_a_stopped_host_at_prepare_switches_nobody_and_the_others_keep_what_they_prepared(
        stage: Callable[..., Stage]) -> None:
    s = stage(3)
    first = s.deploy("one")
    before_live, before_releases = live(s.fleet), releases(s.fleet)
    s.fleet.hosts[1].stop()

    failed = s.deploy("two")

    assert failed.state == "error"
    assert f"cannot reach {s.fleet.hosts[1].spec}" in (failed.error or "")
    assert live(s.fleet) == before_live
    s.fleet.hosts[1].start()
    # The hosts that prepared keep the release (not live) for a retry; the other has none.
    kept = sorted([*before_releases[0], failed.release_id])
    assert releases(s.fleet) == [kept, before_releases[1], kept]
    assert [(h.state, h.step) for h in failed.hosts] == \
        [("canceled", "prepared"), ("failed", "connect"), ("canceled", "prepared")]
    for host in s.fleet.hosts:
        assert (host.root / "current/dist/app.txt").read_text() == "one"
    known, _per_host = known_releases(s.ctx)
    assert not known[failed.release_id].bad  # the host, not the release, was at fault
    assert pipeline.last_good_release(s.ctx, "shop", "staging") == first.release_id


def test_a_changed_host_key_is_refused_with_both_fingerprints(
        stage: Callable[..., Stage]) -> None:
    s = stage(3)
    s.fleet.hosts[2].regenerate_host_key()
    refused = s.deploy("one")
    # The host could not be used: Conveyor could not finish, the release is not to blame.
    assert refused.state == "error"
    assert s.fleet.hosts[2].spec in (refused.error or "")
    host = refused.hosts[2]
    assert host.state == "failed"
    assert "has changed: expected ssh-ed25519 SHA256:" in (host.error or "")
    assert "but the host offered ssh-ed25519 SHA256:" in (host.error or "")
    assert live(s.fleet) == [None, None, None]
    # Kept (not live) where it was prepared, for a retry once the key is sorted out.
    assert releases(s.fleet) == [[refused.release_id], [refused.release_id], []]


def test_a_hook_past_its_deadline_is_ended_on_the_host(stage: Callable[..., Stage]) -> None:
    sleep = f"sleep {600 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"
    s = stage(2, timeout="2s", settings=f"hooks: {{before_activate: ['{sleep}']}}")

    failed = s.deploy("one")

    assert failed.state == "failed"
    assert f"prepare on {s.fleet.hosts[0].spec} did not end within 2 s and was stopped" \
        in (failed.error or "")
    assert pgrep(sleep) == ""
    assert live(s.fleet) == [None, None]
    assert releases(s.fleet) == [[], []]


def test_an_unsafe_artifact_is_refused_and_nothing_is_written_outside(
        stage: Callable[..., Stage], tmp_path: Path) -> None:
    s = stage(2)
    outside = tmp_path / "outside"
    outside.mkdir()
    for members in ([("../x", b"")], [(f"{outside}/x", b"")],
                    [("dist/up", f"../../{outside.name}"), ("dist/up/x", b"")]):
        artifact = s.tmp_path / "artifacts" / "unsafe.tar.gz"
        artifact.parent.mkdir(exist_ok=True)
        artifact.write_bytes(tarball(members))
        sha256 = hashlib.sha256(artifact.read_bytes()).hexdigest()
        final = artifact.with_name(f"{sha256}.tar.gz")
        artifact.rename(final)
        deployment_id = s.deployment(artifact=pipeline.Artifact(str(final), sha256,
                                                                final.stat().st_size))
        deploy.run(deployment_id)
        failed = s.state(deployment_id)
        assert failed.state == "failed", members
        assert "is refused, nothing was unpacked" in (failed.error or "")
        assert list(outside.iterdir()) == []
        assert releases(s.fleet) == [[], []]
        for host in s.fleet.hosts:  # only the artifacts remain (their plain tars removed)
            held = {p.name for p in (host.root / ".conveyor/artifacts").iterdir()}
            assert final.name in held and all(name.endswith(".tar.gz") for name in held)
    assert not Path("/x").exists()


def tarball(members: list[tuple[str, bytes | str]]) -> bytes:
    """A .tar.gz of (name, data) files, or (name, target) symbolic links."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if isinstance(data, str):
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# --- failures in activate ---------------------------------------------------------------------


def test_a_failing_health_check_in_the_second_batch_puts_every_switched_host_back(
        stage: Callable[..., Stage]) -> None:
    s = stage(5, settings="""
batch: 2
hooks: {after_activate: ['echo "$CONVEYOR_RELEASE_ID $CONVEYOR_SHA" >> ../../after.log']}
healthcheck: {command: 'test ! -e ../../unhealthy', retries: 2, interval: 1s, timeout: 5s}
""")
    first = s.deploy("one")
    assert first.state == "succeeded", first.error
    (s.fleet.hosts[2].root / "unhealthy").touch()

    failed = s.deploy("two")

    assert failed.state == "failed"
    assert failed.error and failed.error.startswith(
        "activate failed, every switched host put back:")
    assert "the health check failed 2 time(s)" in failed.error
    assert live(s.fleet) == [f"releases/{first.release_id}"] * 5
    assert releases(s.fleet) == [[first.release_id]] * 5
    assert [h.state for h in failed.hosts] == \
        ["rolled_back", "rolled_back", "failed", "rolled_back", "canceled"]
    assert {h.release for h in failed.hosts} == {first.release_id}
    new, old = failed.release_id, first.release_id
    for host in s.fleet.hosts[:4]:  # switched, then put back, after_activate run again
        assert revisions(host)[1:] == [f"activate {new} previous={old}",
                                       f"rollback {old} previous={new}"]
        assert (host.root / "after.log").read_text().splitlines() == \
            [f"{old} {SHA}", f"{new} {SHA}", f"{old} {SHA}"]
    assert revisions(s.fleet.hosts[4])[1:] == []  # never switched
    known, _per_host = known_releases(s.ctx)
    assert known[new].bad and "health check" in (known[new].bad_reason or "")
    assert pipeline.last_good_release(s.ctx, "shop", "staging") == old


def test_a_failed_first_deployment_leaves_no_current(stage: Callable[..., Stage]) -> None:
    s = stage(2, settings="healthcheck: {command: 'false', retries: 1}")
    failed = s.deploy("one")
    assert failed.state == "failed"
    assert live(s.fleet) == [None, None]
    assert [os.path.lexists(h.root / "current") for h in s.fleet.hosts] == [False, False]
    assert releases(s.fleet) == [[], []]
    assert [h.state for h in failed.hosts] == ["failed", "failed"]


# --- pruning, the lock, local hosts -----------------------------------------------------------


def test_pruning_never_removes_the_live_or_the_previous_release(
        stage: Callable[..., Stage]) -> None:
    s = stage(2)  # keep_releases: 2
    a = s.deploy("a")
    b = s.deploy("b")
    for host in s.fleet.hosts:  # put back on a by hand (as `conveyor rollback` will)
        with transport.LocalTransport() as here:
            result = here.run(remote.rollback(str(host.root), a.release_id, {}), timeout=30)
            assert result.exit_status == 0, result.stderr
    c = s.deploy("c")
    assert c.state == "succeeded", c.error
    # Newest two are b and c; a is the previous release (what was live before c) and stays.
    assert releases(s.fleet) == [sorted([a.release_id, b.release_id, c.release_id])] * 2
    d = s.deploy("d")
    assert releases(s.fleet) == [sorted([c.release_id, d.release_id])] * 2
    assert [h.previous_release for h in d.hosts] == [c.release_id] * 2


def test_a_deployment_that_finds_the_lock_taken_goes_back_to_the_queue_and_runs_next(
        stage: Callable[..., Stage], redis_db: redis.Redis) -> None:
    s = stage(2, settings="hooks: {before_activate: ['touch ../../started; sleep 1']}")
    first = s.deployment("one")
    holder = threading.Thread(target=deploy.run, args=(first,))
    holder.start()
    s.wait_for(lambda: (s.fleet.hosts[0].root / "started").exists())
    second = s.deployment("two")

    deploy.run(second)  # returns at once: no worker waits for another deployment

    assert s.state(second).state == "queued"
    retry = scheduled_jobs(redis_db)
    assert [job.args for job in retry] == [[second]]
    holder.join()
    assert s.state(first).state == "succeeded"
    # The deployment that ended queued the one waiting, ahead of its scheduled retry.
    assert [job.args for job in queued_jobs(redis_db)] == [[second]]
    run_worker_burst(redis_db)

    done = sorted((s.state(first), s.state(second)), key=lambda d: d.id)
    assert [d.state for d in done] == ["succeeded", "succeeded"]
    assert done[0].finished_at <= done[1].started_at  # type: ignore[operator]
    one, two = done[0].release_id, done[1].release_id
    for host in s.fleet.hosts:
        assert revisions(host) == [f"activate {one} previous=", f"activate {two} previous={one}"]
    assert [h.previous_release for h in done[1].hosts] == [one, one]


def test_a_waiting_deployment_runs_by_its_scheduled_retry_when_the_holder_died(
        stage: Callable[..., Stage], redis_db: redis.Redis, tmp_path: Path) -> None:
    s = stage(1)
    waiting = s.deployment("one")
    lock = pipeline.lock_name("shop", "staging")
    redis_db.set(lock, "a worker killed with kill -9", px=60_000)  # it never releases it

    deploy.run(waiting)
    assert s.state(waiting).state == "queued"
    assert [job.args for job in scheduled_jobs(redis_db)] == [[waiting]]
    assert queued_jobs(redis_db) == []
    redis_db.delete(lock)  # what the lock's TTL does a minute after its holder died

    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "app.cli", "rq-worker", "deploys",
                                   "--with-scheduler"], stdout=out, stderr=subprocess.STDOUT)
    try:
        s.wait_for(lambda: s.state(waiting).state not in ("queued", "running"), timeout=60,
                   what=lambda: log.read_text(errors="replace"))
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert s.state(waiting).state == "succeeded", s.state(waiting).error
    assert live(s.fleet) == [f"releases/{s.state(waiting).release_id}"]


def scheduled_jobs(redis_db: redis.Redis) -> list[Job]:
    queue = Queue("deploys", connection=redis_db, serializer=JSONSerializer)
    return [Job.fetch(job_id, connection=redis_db, serializer=JSONSerializer)
            for job_id in queue.scheduled_job_registry.get_job_ids()]


def queued_jobs(redis_db: redis.Redis) -> list[Job]:
    return Queue("deploys", connection=redis_db, serializer=JSONSerializer).get_jobs()


def run_worker_burst(redis_db: redis.Redis) -> None:
    """Run what is queued on `deploys` in this process, as an RQ worker would."""
    queue = Queue("deploys", connection=redis_db, serializer=JSONSerializer)
    SimpleWorker([queue], connection=redis_db, serializer=JSONSerializer).work(burst=True)


def test_a_lost_lock_stops_the_deployment_before_anything_switches(
        stage: Callable[..., Stage]) -> None:
    s = stage(2)
    deployment_id = s.deployment("one")
    order = pipeline.start_deployment(s.ctx, deployment_id)
    assert order is not None
    lost = threading.Event()
    lost.set()  # as the heartbeat does when another holder has the key
    state, error = deployer.Deployer(s.ctx, order, lost).deploy()
    assert (state, error) == ("error", deployer.LOCK_LOST)
    assert live(s.fleet) == [None, None]
    assert releases(s.fleet) == [[], []]


def test_the_heartbeat_notices_a_lock_taken_over(redis_db: redis.Redis) -> None:
    name = f"conveyor:lock:test:{uuid.uuid4().hex}"
    with deploy.environment_lock(redis_db, name, ttl=5, heartbeat=0.05) as lost:
        assert redis_db.pttl(name) > 0  # it expires: a dead worker's lock frees itself
        assert not lost.wait(0.2)  # renewed while ours
        redis_db.set(name, "another worker's token")
        assert lost.wait(5)
    assert redis_db.get(name) == b"another worker's token"  # not released: not ours


def test_local_hosts_behave_as_ssh_hosts(stage: Callable[..., Stage]) -> None:
    s = stage(1, local=True, settings=f"""
shared: [var/]
hooks: {{before_activate: ['{SHOW_ENV}']}}
""")
    here = s.fleet.deploy_path  # `local` deploys to the path itself, on this machine
    (here / "shared").mkdir()
    (s.fleet.hosts[0].root / "shared").mkdir()
    first = s.deploy("one")
    done = s.deploy("two")
    assert (first.state, done.state) == ("succeeded", "succeeded")
    assert [h.host for h in done.hosts] == ["local", s.fleet.hosts[0].spec]
    roots = [here, s.fleet.hosts[0].root]
    trees = [sorted(str(p.relative_to(root)) for p in root.rglob("*")
                    if ".conveyor" not in p.parts) for root in roots]
    assert trees[0] == trees[1]
    for root in roots:
        assert os.readlink(root / "current") == f"releases/{done.release_id}"
        assert os.readlink(root / "current/var") == f"{here}/shared/var"
        assert (root / "current/hook-env.txt").read_text().endswith(
            f"|{here}/releases/{first.release_id}")
        assert revisions(root) == [f"activate {first.release_id} previous=",
                                   f"activate {done.release_id} previous={first.release_id}"]
    assert [h.uploaded for h in done.hosts] == [True, True]  # a new artifact for both


def test_a_deployment_runs_once(stage: Callable[..., Stage]) -> None:
    s = stage(3)
    deployment_id = s.deployment("one")
    deploy.run(deployment_id)
    release = s.state(deployment_id).release_id
    deploy.run(deployment_id)  # RQ redelivers a job: nothing happens twice
    assert s.state(deployment_id).release_id == release
    assert releases(s.fleet) == [[release]] * 3
    assert pipeline.deployment_target(s.ctx, deployment_id) is None


def pgrep(pattern: str) -> str:
    result = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return result.stdout
