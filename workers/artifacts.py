"""Where artifacts live between build and deploy (`artifacts.store`).

`local`: the build's file in the data dir is the artifact; a deploy job on the same machine
reads it there. `s3`: the build job uploads the artifact and its sha256 to the bucket (the
bucket is its home: the build's local file goes); a deploy job on any machine fetches it
once into its own cache (`<data dir>/cache/artifacts/<project>/<sha256>.tar.gz`), verifies
its sha256 against the history, and reuses that copy for later deployments of the build.
Credentials are boto3's usual ones (`AWS_*` variables, instance roles), never the file.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from app import pipeline
from app.config import Artifacts
from app.context import Context
from workers.delta import index_path

SCHEME = "s3://"
CHUNK = 1 << 20


class StoreError(Exception):
    """The artifact store cannot do what was asked; the message says what and why."""


def keep(ctx: Context, project: str, artifact: pipeline.Artifact,
         say: Callable[[str], None]) -> pipeline.Artifact:
    """After packing: the artifact as the history records it. With s3, uploaded with its
    sha256 and recorded by its `s3://` URL; with local, as packed."""
    store = ctx.config.artifacts
    if store.store != "s3":
        return artifact
    url = object_url(store, project, artifact.sha256)
    bucket, key = split_url(url)
    client = _client(store)
    started = time.monotonic()
    try:
        client.upload_file(artifact.path, bucket, key,
                           ExtraArgs={"Metadata": {"sha256": artifact.sha256}})
        client.put_object(Bucket=bucket, Key=f"{key}.sha256",
                          Body=f"{artifact.sha256}  {Path(key).name}\n".encode())
        index = index_path(Path(artifact.path))
        if index.is_file():  # lets an incremental deployment read a few files, not all
            client.upload_file(str(index), bucket, _index_key(key))
    except Exception as exc:
        raise StoreError(f"could not upload the artifact to {url}: {_reason(exc)}") from None
    say(f"uploaded the artifact to {url} in {time.monotonic() - started:.1f} s")
    Path(artifact.path).unlink(missing_ok=True)
    index_path(Path(artifact.path)).unlink(missing_ok=True)
    return replace(artifact, path=url)


def on_this_machine(ctx: Context, order: pipeline.DeploymentOrder,
                    say: Callable[[str], None]) -> pipeline.DeploymentOrder:
    """The deployment with its artifact as a file on this machine: as recorded (local
    store), or this worker's verified copy of the bucket's object, fetched when missing."""
    artifact = order.artifact
    if not artifact.path.startswith(SCHEME):
        return order
    return replace(order, artifact=replace(
        artifact, path=str(cached(ctx, order.project.name, artifact, say))))


def cached(ctx: Context, project: str, artifact: pipeline.Artifact,
           say: Callable[[str], None]) -> Path:
    """This machine's copy of an artifact kept in s3: fetched once, verified, reused."""
    path = cache_dir(ctx.settings.data_dir, project) / f"{artifact.sha256}.tar.gz"
    if path.is_file() and sha256_of(path) == artifact.sha256:  # a damaged copy is replaced
        say(f"the artifact {artifact.sha256[:12]} is in this machine's cache")
        return path
    started = time.monotonic()
    fetch(ctx.config.artifacts, artifact, path)
    fetch_index(ctx.config.artifacts, artifact, path)
    say(f"fetched the artifact from {artifact.path}, {artifact.size / 1e6:.1f} MB in"
        f" {time.monotonic() - started:.1f} s; sha256 verified")
    return path


def fetch(store: Artifacts, artifact: pipeline.Artifact, path: Path) -> None:
    """Download the object at `artifact.path` to `path`, only if its sha256 is the
    artifact's: a partial or different object never takes the name."""
    bucket, key = split_url(artifact.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".partial-{os.getpid()}-{threading.get_ident()}")
    try:
        _client(store).download_file(bucket, key, str(partial))
        found = sha256_of(partial)
        if found != artifact.sha256:
            raise StoreError(f"the artifact fetched from {artifact.path} is not the one built:"
                             f" its sha256 is {found}, the build's {artifact.sha256};"
                             " build again")
        os.replace(partial, path)
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"could not fetch the artifact {artifact.path}: {_reason(exc)}"
                         ) from None
    finally:
        partial.unlink(missing_ok=True)


def forget(ctx: Context, paths: Iterable[str]) -> None:
    """Delete artifacts the history no longer keeps: files here, objects in the bucket."""
    for path in paths:
        if not path.startswith(SCHEME):
            Path(path).unlink(missing_ok=True)
            index_path(Path(path)).unlink(missing_ok=True)
            continue
        bucket, key = split_url(path)
        try:
            _client(ctx.config.artifacts).delete_objects(Bucket=bucket, Delete={
                "Objects": [{"Key": key}, {"Key": f"{key}.sha256"}, {"Key": _index_key(key)}],
                "Quiet": True})
        except Exception:  # noqa: S112 - left for the next prune; never fails a build
            continue


def prune_cache(ctx: Context, project: str) -> list[Path]:
    """Remove this machine's cached copies of the project's artifacts the history no
    longer keeps (and partial downloads older than a day); the paths removed."""
    folder = cache_dir(ctx.settings.data_dir, project)
    if not folder.is_dir():
        return []
    kept = pipeline.kept_artifacts(ctx, project)
    removed = []
    for path in folder.iterdir():
        stale = path.name.startswith(".partial-") and time.time() - path.stat().st_mtime > 86400
        sha256 = path.name.removesuffix(".tar.gz").removesuffix(".index.json")
        unused = sha256 != path.name and sha256 not in kept
        if stale or unused:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def fetch_index(store: Artifacts, artifact: pipeline.Artifact, path: Path) -> None:
    """Fetch the artifact's index beside this machine's copy, if the bucket has one; without
    it an incremental deployment reads the whole artifact (slower, the same result)."""
    bucket, key = split_url(artifact.path)
    index = index_path(path)
    partial = index.with_name(f".partial-{os.getpid()}-{threading.get_ident()}.index")
    try:
        _client(store).download_file(bucket, _index_key(key), str(partial))
        os.replace(partial, index)
    except Exception:  # the index only saves time: without it the artifact is read through
        index.unlink(missing_ok=True)
    finally:
        partial.unlink(missing_ok=True)


def cache_dir(data_dir: Path, project: str) -> Path:
    """Where this machine keeps its copies of the project's artifacts from the bucket."""
    return data_dir / "cache" / "artifacts" / project


def object_url(store: Artifacts, project: str, sha256: str) -> str:
    """`s3://<bucket>/<prefix><project>/<sha256>.tar.gz`."""
    return f"{SCHEME}{store.s3['bucket']}/{store.s3.get('prefix', '')}{project}/{sha256}.tar.gz"


def split_url(url: str) -> tuple[str, str]:
    """(bucket, key) of an `s3://` URL."""
    bucket, _, key = url[len(SCHEME):].partition("/")
    return bucket, key


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _client(store: Artifacts) -> Any:
    import boto3  # only a worker that uses s3 pays for importing it
    from botocore.config import Config

    options: dict[str, Any] = {"retries": {"max_attempts": 5, "mode": "standard"},
                               "connect_timeout": 10, "read_timeout": 60}
    if store.s3.get("endpoint_url"):  # S3-compatible servers (MinIO, Ceph) want path style
        options["s3"] = {"addressing_style": "path"}
    return boto3.session.Session().client(
        "s3", region_name=store.s3.get("region"), endpoint_url=store.s3.get("endpoint_url"),
        config=Config(**options))


def _index_key(key: str) -> str:
    """The bucket key of an artifact's index: `<sha256>.index.json` beside it."""
    return key.removesuffix(".tar.gz") + ".index.json"


def _reason(exc: Exception) -> str:
    """What went wrong, in one line (boto's messages name the operation and the error)."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0]
