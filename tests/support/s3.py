"""A local stand-in for S3: moto's server (`moto_server`, from PyPI's moto[server]) as a
process of its own on a free port of 127.0.0.1, with a fresh bucket per test."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.services import free_port, wait_for_http

REGION = "eu-west-1"
ACCESS_KEY = "AKIATESTCONVEYOR0001"
# moto accepts any credentials: this one is long and unique, so a test can find it in output.
SECRET_KEY = "conveyorTestSecretKey+0123456789abcdefghij"


@dataclass
class S3Server:
    """moto's server, the bucket of the current test, and the AWS_* a worker would have."""

    url: str
    bucket: str = ""

    @property
    def env(self) -> dict[str, str]:
        """What boto3 reads: credentials and region, as on a real worker."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": REGION}

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def new_bucket(self) -> str:
        self.bucket = f"conveyor-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=self.bucket, CreateBucketConfiguration={
            "LocationConstraint": REGION})
        return self.bucket

    def objects(self) -> list[str]:
        answer = self.client().list_objects_v2(Bucket=self.bucket)
        return sorted(item["Key"] for item in answer.get("Contents", []))

    def settings(self, prefix: str = "shop/") -> str:
        """The pipeline file's `artifacts:` section for this bucket."""
        return (f"artifacts:\n  store: s3\n  s3: {{bucket: {self.bucket}, prefix: {prefix},"
                f" endpoint_url: '{self.url}', region: {REGION}}}\n")


@pytest.fixture(scope="module", name="s3_process")
def s3_process_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto_server for the tests of a module (it starts in seconds, not instantly)."""
    port = free_port()
    log = Path(tmp_path_factory.mktemp("moto")) / "moto.log"
    moto = str(Path(sys.executable).with_name("moto_server"))
    argv = [moto] if os.path.exists(moto) else [sys.executable, "-m", "moto.server"]
    with open(log, "wb") as out:
        process = subprocess.Popen([*argv, "-H", "127.0.0.1", "-p", str(port)], stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/moto-api/", timeout=60)
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture(name="s3")
def s3_fixture(s3_process: S3Server) -> S3Server:
    """The S3 stand-in with a new, empty bucket for this test."""
    s3_process.new_bucket()
    return s3_process
