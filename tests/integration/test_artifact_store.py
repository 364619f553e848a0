"""`artifacts.store: s3` against a local S3 stand-in (moto's server, a process of its own):
the build job uploads the artifact and its sha256; the deploy job fetches it once into its
machine's cache, verifies it, reuses it; a corrupt object fails the deployment with nothing
switched; old artifacts go from the bucket and from the caches."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from app import pipeline
from app.context import Context
from app.models import Build, LogLine
from app.pipeline.builds import find_or_create_build
from tests.support import stage as staging
from tests.support.gitrepo import GitRepo
from tests.support.s3 import (  # noqa: F401 - fixtures are found by name
    SECRET_KEY,
    S3Server,
    s3_fixture,
    s3_process_fixture,
)
from tests.support.sshd import SshFleet
from workers import artifacts, build, deploy

BUILD_PIPELINE = """\
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${{WEBHOOK_SECRET}}
    clone_url: {clone_url}
    build: {{commands: ["mkdir -p dist && cp app.txt dist/"], artifact: dist, keep_artifacts: 1}}
    environments:
      staging: {{branches: [main], hosts: [local], path: /srv/shop}}
"""


def s3_stage(s3: S3Server, ssh_fleet: Callable[[int], SshFleet],
             worker_context: Callable[..., Context], database_url: str,
             tmp_path: Path, count: int = 2) -> staging.Stage:
    """The deploy stage of tests.support.stage, its artifacts kept in the bucket."""
    fleet = ssh_fleet(count)
    text = s3.settings() + staging.PIPELINE.format(
        key=fleet.client_key, known_hosts=fleet.known_hosts, timeout="1m",
        hosts=", ".join(h.spec for h in fleet.hosts), path=fleet.deploy_path, settings="")
    return staging.Stage(worker_context(text, database_url, s3.env), fleet, tmp_path)


def uploaded(s: staging.Stage, content: str) -> pipeline.Artifact:
    """An artifact packed on "the build machine" and kept in the bucket, as a build does."""
    return build.stored(s.ctx, "shop", s.pack(content), lambda _line: None)


def cache(ctx: Context) -> Path:
    return artifacts.cache_dir(ctx.settings.data_dir, "shop")


def test_a_deploy_worker_fetches_the_artifact_once_verifies_it_and_reuses_it(
        s3: S3Server, ssh_fleet: Callable[[int], SshFleet],
        worker_context: Callable[..., Context], database_url: str, tmp_path: Path) -> None:
    s = s3_stage(s3, ssh_fleet, worker_context, database_url, tmp_path)
    artifact = uploaded(s, "one")
    key = f"shop/shop/{artifact.sha256}.tar.gz"
    assert artifact.path == f"s3://{s3.bucket}/{key}"
    index = f"shop/shop/{artifact.sha256}.index.json"  # where incremental deploys read
    assert s3.objects() == [index, key, f"{key}.sha256"]
    body = s3.client().get_object(Bucket=s3.bucket, Key=f"{key}.sha256")["Body"].read()
    assert body.decode() == f"{artifact.sha256}  {artifact.sha256}.tar.gz\n"
    assert not list((tmp_path / "artifacts").glob("*.tar.gz"))  # the bucket is its home

    first = s.state(s.deployment(artifact=artifact))
    deploy.run(first.id)
    done = s.state(first.id)
    assert done.state == "succeeded", done.error
    assert staging.live(s.fleet) == [f"releases/{done.release_id}"] * 2
    assert all((h.root / "current/dist/app.txt").read_text() == "one" for h in s.fleet.hosts)
    copy = cache(s.ctx) / f"{artifact.sha256}.tar.gz"
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == artifact.sha256
    fetched = cache(s.ctx) / f"{artifact.sha256}.index.json"
    assert fetched.read_bytes() == s3.client().get_object(
        Bucket=s3.bucket, Key=index)["Body"].read()
    assert any(line.startswith(f"fetched the artifact from {artifact.path}")
               and line.endswith("sha256 verified") for line in s.log(done.id))

    # Gone from the bucket, the build is still deployed again from this machine's copy.
    s3.client().delete_object(Bucket=s3.bucket, Key=key)
    again = s.state(s.deployment(build_id=done.build_id))
    deploy.run(again.id)
    redone = s.state(again.id)
    assert redone.state == "succeeded", redone.error
    assert any("is in this machine's cache" in line for line in s.log(redone.id))
    assert not any(line.startswith("fetched") for line in s.log(redone.id))


def test_a_damaged_cached_copy_is_fetched_again(
        s3: S3Server, ssh_fleet: Callable[[int], SshFleet],
        worker_context: Callable[..., Context], database_url: str, tmp_path: Path) -> None:
    s = s3_stage(s3, ssh_fleet, worker_context, database_url, tmp_path, count=1)
    artifact = uploaded(s, "one")
    lines: list[str] = []
    copy = artifacts.cached(s.ctx, "shop", artifact, lines.append)
    assert artifacts.cached(s.ctx, "shop", artifact, lines.append) == copy
    copy.write_bytes(b"\0" * artifact.size)  # same size, other bytes
    assert artifacts.cached(s.ctx, "shop", artifact, lines.append) == copy
    assert artifacts.sha256_of(copy) == artifact.sha256
    assert [line.split(",")[0] for line in lines] == [
        f"fetched the artifact from {artifact.path}",
        f"the artifact {artifact.sha256[:12]} is in this machine's cache",
        f"fetched the artifact from {artifact.path}"]


def test_a_corrupt_object_fails_the_deployment_with_no_host_changed(
        s3: S3Server, ssh_fleet: Callable[[int], SshFleet],
        worker_context: Callable[..., Context], database_url: str, tmp_path: Path) -> None:
    s = s3_stage(s3, ssh_fleet, worker_context, database_url, tmp_path)
    good = uploaded(s, "one")
    first = s.deployment(artifact=good)
    deploy.run(first)
    assert s.state(first).state == "succeeded"
    before = staging.live(s.fleet)

    bad = uploaded(s, "two")
    _bucket, key = artifacts.split_url(bad.path)
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=b"not the artifact that was built")
    second = s.deployment(artifact=bad)
    deploy.run(second)
    failed = s.state(second)
    assert failed.state == "failed"
    assert failed.error is not None
    assert f"the artifact fetched from {bad.path} is not the one built" in failed.error
    assert f"the build's {bad.sha256}" in failed.error and "no host changed" in failed.error
    assert staging.live(s.fleet) == before
    assert not (cache(s.ctx) / f"{bad.sha256}.tar.gz").exists()
    assert not [p for p in cache(s.ctx).iterdir() if p.name.startswith(".partial-")]


def test_a_missing_bucket_fails_the_build_upload_and_the_fetch_clearly(
        s3: S3Server, ssh_fleet: Callable[[int], SshFleet],
        worker_context: Callable[..., Context], database_url: str, tmp_path: Path) -> None:
    s = s3_stage(s3, ssh_fleet, worker_context, database_url, tmp_path)
    good = uploaded(s, "one")
    s3.client().delete_object(Bucket=s3.bucket, Key=artifacts.split_url(good.path)[1])
    deployment = s.deployment(artifact=good)
    deploy.run(deployment)
    failed = s.state(deployment)
    assert failed.state == "failed"
    assert failed.error and failed.error.startswith(f"could not fetch the artifact {good.path}")
    assert staging.live(s.fleet) == [None, None]

    for key in s3.objects():
        s3.client().delete_object(Bucket=s3.bucket, Key=key)
    s3.client().delete_bucket(Bucket=s3.bucket)
    packed = s.pack("two")
    try:
        build.stored(s.ctx, "shop", packed, lambda _line: None)
    except build.BuildError as exc:
        assert str(exc).startswith("could not upload the artifact to s3://")
        assert "NoSuchBucket" in str(exc)
    else:
        raise AssertionError("an upload to a missing bucket succeeded")
    assert not Path(packed.path).exists()


def test_the_build_job_uploads_and_old_artifacts_leave_the_bucket_and_the_cache(
        s3: S3Server, worker_context: Callable[..., Context], database_url: str,
        git_repo: GitRepo) -> None:
    ctx = worker_context(s3.settings() + BUILD_PIPELINE.format(clone_url=git_repo.url),
                         database_url, s3.env)
    project = ctx.config.projects["shop"]
    shas = [git_repo.commit({"app.txt": f"v{n}"}) for n in (1, 2)]
    ids = []
    for sha in shas:
        found, _new = find_or_create_build(ctx, project, sha=sha, ref="refs/heads/main",
                                           repository="acme/shop", clone_url=git_repo.url)
        ids.append(found.id)
        if sha == shas[0]:
            build.run(found.id)
            first = row(ctx, found.id)
            assert first.state == "succeeded", first.error
            assert first.artifact_path == (f"s3://{s3.bucket}/shop/shop/"
                                           f"{first.artifact_sha256}.tar.gz")
            # A deploy machine's cache holds it (fetched for a deployment).
            artifacts.cached(ctx, "shop", pipeline.Artifact(
                first.artifact_path, first.artifact_sha256 or "", first.artifact_size or 0),
                lambda _line: None)
    assert len(s3.objects()) == 3  # the artifact, its sha256 and its index
    assert any("uploaded the artifact to s3://" in line for line in log(ctx, ids[0]))
    assert not list((ctx.settings.data_dir / "artifacts").rglob("*.tar.gz"))

    build.run(ids[1])  # keep_artifacts: 1, and no environment runs the first
    second = row(ctx, ids[1])
    assert row(ctx, ids[0]).artifact_path is None
    assert s3.objects() == sorted([f"shop/shop/{second.artifact_sha256}.tar.gz",
                                   f"shop/shop/{second.artifact_sha256}.tar.gz.sha256",
                                   f"shop/shop/{second.artifact_sha256}.index.json"])
    assert list(cache(ctx).glob("*.tar.gz"))
    old = row(ctx, ids[0]).artifact_sha256
    assert sorted(artifacts.prune_cache(ctx, "shop")) == [
        cache(ctx) / f"{old}.index.json", cache(ctx) / f"{old}.tar.gz"]
    assert not list(cache(ctx).iterdir())


def test_aws_secrets_are_masked_in_what_is_stored(
        s3: S3Server, worker_context: Callable[..., Context], database_url: str,
        git_repo: GitRepo) -> None:
    ctx = worker_context(s3.settings() + BUILD_PIPELINE.format(clone_url=git_repo.url),
                         database_url, s3.env)
    assert SECRET_KEY in ctx.secrets()
    found, _new = find_or_create_build(ctx, ctx.config.projects["shop"],
                                       sha=git_repo.commit({"app.txt": "v1"}),
                                       ref="refs/heads/main", repository="acme/shop",
                                       clone_url=git_repo.url)
    pipeline.log(ctx, f"the key is {SECRET_KEY}", build_id=found.id)
    assert log(ctx, found.id) == ["the key is ***"]


def row(ctx: Context, build_id: int) -> Build:
    with ctx.db.session() as session:
        found = session.get(Build, build_id)
        assert found is not None
        return found


def log(ctx: Context, build_id: int) -> list[str]:
    with ctx.db.session() as session:
        return [line.text for line in session.query(LogLine).filter_by(
            build_id=build_id).order_by(LogLine.id)]
