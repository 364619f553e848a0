"""`artifacts:` in the pipeline file: local or s3, and what s3 needs (SPEC §3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import config
from app.context import Context
from app.settings import Settings

PROJECTS = """\
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: s3cret
    build: {commands: ["true"], artifact: dist}
    environments:
      staging: {branches: [main], hosts: [local], path: /srv/shop}
"""


def parse(artifacts: str) -> config.Config:
    return config.parse(artifacts + PROJECTS, Path("conveyor.yml"), {})


def problems(artifacts: str) -> list[str]:
    with pytest.raises(config.ConfigError) as caught:
        parse(artifacts)
    return caught.value.problems


def test_the_store_is_local_by_default_and_s3_takes_its_settings() -> None:
    assert parse("").artifacts == config.Artifacts(store="local", s3={})
    conf = parse("artifacts:\n  store: s3\n  s3:\n    bucket: conveyor-artifacts\n"
                 "    prefix: shop/\n    endpoint_url: https://s3.example.com\n"
                 "    region: eu-west-1\n")
    assert conf.artifacts.store == "s3"
    assert dict(conf.artifacts.s3) == {"bucket": "conveyor-artifacts", "prefix": "shop/",
                                       "endpoint_url": "https://s3.example.com",
                                       "region": "eu-west-1"}


def test_s3_without_settings_or_a_bucket_names_the_line() -> None:
    assert problems("artifacts:\n  store: s3\n") == [
        "conveyor.yml:2: artifacts.store: s3 needs artifacts.s3 with at least a bucket"]
    assert problems("artifacts:\n  store: s3\n  s3:\n    region: eu-west-1\n") == [
        "conveyor.yml:4: artifacts.s3.bucket: is required"]


def test_a_bad_bucket_prefix_or_endpoint_names_its_line_and_key() -> None:
    found = problems("artifacts:\n  store: s3\n  s3:\n    bucket: My_Bucket\n"
                     "    prefix: /abs/\n    endpoint_url: ftp://s3.example.com\n")
    assert found == [
        "conveyor.yml:4: artifacts.s3.bucket: 'My_Bucket' is not a bucket name (3-63 of"
        " a-z 0-9 . -, starting and ending with a letter or digit)",
        "conveyor.yml:5: artifacts.s3.prefix: '/abs/' must be a relative key prefix (shop/),"
        " without .. parts",
        "conveyor.yml:6: artifacts.s3.endpoint_url: 'ftp://s3.example.com' must be an"
        " http:// or https:// URL without credentials"]


def test_credentials_are_no_key_of_the_file_and_unknown_stores_are_refused() -> None:
    found = problems("artifacts:\n  store: s3\n  s3:\n    bucket: b-1\n"
                     "    secret_access_key: x\n")
    assert len(found) == 1 and found[0].startswith(
        "conveyor.yml:5: artifacts.s3.secret_access_key: unknown key 'secret_access_key'")
    assert problems("artifacts:\n  store: gcs\n") == [
        "conveyor.yml:2: artifacts.store: must be one of local, s3, not 'gcs'"]


def test_aws_secrets_from_the_environment_are_masked() -> None:
    settings = Settings.from_env({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
                                  "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
                                  "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEBYaD"})
    assert settings.aws_secrets == ("wJalrXUtnFEMI/K7MDENG", "FwoGZXIvYXdzEBYaD")
    ctx = Context(settings=settings, config=parse(""), db=None, jobs=None)  # type: ignore[arg-type]
    assert {"wJalrXUtnFEMI/K7MDENG", "FwoGZXIvYXdzEBYaD"} <= set(ctx.secrets())
