"""`conveyor check` on the README's example pipeline, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "conveyor.yml"


def check(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "CONVEYOR_CONFIG": str(config), **env}
    return subprocess.run([sys.executable, "-m", "app.cli", "check"], env=environ,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_example_pipeline_is_valid_and_its_plan_is_printed() -> None:
    # What `check` prints is masked: a one-letter secret would star every "s" of the plan.
    result = check(EXAMPLE, EXAMPLE_WEBHOOK_SECRET="example-webhook-secret")
    assert result.returncode == 0, result.stderr
    assert "project example: github acme/example" in result.stdout
    assert "environment staging: branches main -> 1 host(s)" in result.stdout


def test_a_misspelled_key_exits_2_naming_line_and_key_path(tmp_path: Path) -> None:
    broken = tmp_path / "conveyor.yml"
    broken.write_text(EXAMPLE.read_text().replace("keep_releases:", "keep_release:"))
    line = next(n for n, text in enumerate(broken.read_text().splitlines(), 1)
                if "keep_release:" in text)
    result = check(broken, EXAMPLE_WEBHOOK_SECRET="s")
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{broken}:{line}: projects.example.environments.staging.keep_release: " \
           "unknown key 'keep_release'" in result.stderr


def test_a_missing_secret_variable_exits_2(tmp_path: Path) -> None:
    environ_without = {k: v for k, v in os.environ.items() if k != "EXAMPLE_WEBHOOK_SECRET"}
    result = subprocess.run([sys.executable, "-m", "app.cli", "check"],
                            env={**environ_without, "CONVEYOR_CONFIG": str(EXAMPLE)},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "environment variable EXAMPLE_WEBHOOK_SECRET is not set" in result.stderr


def test_the_plan_says_which_chat_events_go_where(tmp_path: Path) -> None:
    config = tmp_path / "conveyor.yml"
    config.write_text(EXAMPLE.read_text().rstrip("\n") + """
    notify:
      - {slack: "https://hooks.slack.example/services/T0/B0/x", events: [failed]}
      - {slack: "https://chat.example/hooks/abc", events: [awaiting_approval, started]}
""")
    result = check(config, EXAMPLE_WEBHOOK_SECRET="example-webhook-secret")
    assert result.returncode == 0, result.stderr
    assert "  chat: 2 webhook(s) on started, failed, awaiting_approval\n" in result.stdout


def test_the_plan_says_where_artifacts_live(tmp_path: Path) -> None:
    assert "artifacts: local (the build worker's data dir" in check(
        EXAMPLE, EXAMPLE_WEBHOOK_SECRET="example-webhook-secret").stdout
    config = tmp_path / "conveyor.yml"
    config.write_text("artifacts:\n  store: s3\n  s3: {bucket: conveyor-artifacts, prefix: shop/,"
                      " endpoint_url: 'https://minio.example.com'}\n" + EXAMPLE.read_text())
    result = check(config, EXAMPLE_WEBHOOK_SECRET="example-webhook-secret")
    assert result.returncode == 0, result.stderr
    assert ("artifacts: s3://conveyor-artifacts/shop/ at https://minio.example.com"
            " (credentials from AWS_*)\n") in result.stdout
