"""The dashboard in a real browser (chromium through Selenium) against the real web and
worker processes and sshd hosts: sign in, watch a deployment go live with its log followed
live, approve production from the approval page; the screenshot is the README's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.support import conveyor
from tests.support.browser import browser_fixture, text, wait_until  # noqa: F401 - fixture
from tests.support.forge import GitHubForge
from tests.support.gitrepo import GitRepo
from tests.support.pipeline_run import GITHUB_TOKEN, PipelineRun, pipeline_run
from tests.support.services import postgres_database
from tests.support.sshd import SshFleet

pytestmark = pytest.mark.timeout(300)
SCREENSHOT = Path(__file__).parents[2] / "docs" / "dashboard.png"
# Staging's hosts wait before switching until the test lets them go, so that the browser is
# on the page while the deployment runs; after_activate writes a line only then.
HOLD = "touch ../../held; while [ ! -e ../../go ]; do sleep 0.05; done"
STAGING = f"hooks: {{before_activate: ['{HOLD}'], after_activate: ['echo went-live-marker']}}"


@pytest.fixture
def run(tmp_path: Path, redis_url: str, redis_db: redis.Redis,
        ssh_fleet: Callable[[int], SshFleet], git_repo: GitRepo,
        github_forge: Callable[[str], GitHubForge]) -> Iterator[PipelineRun]:
    with postgres_database() as database_url, pipeline_run(
            tmp_path, database_url, redis_url, git_repo, ssh_fleet(4),
            github_forge(GITHUB_TOKEN), staging=STAGING,
            production="approval: manual") as started:
        yield started


def test_sign_in_watch_staging_go_live_and_approve_production(
        run: PipelineRun, browser: WebDriver) -> None:
    r = run
    browser.get(f"{r.web}/")
    browser.find_element(By.ID, "token").send_keys(conveyor.API_TOKEN)
    browser.find_element(By.ID, "signin").click()
    wait_until(browser, lambda b: text(b, "#who") == "admin", "signed in as admin")

    sha, _body = r.push("v1\n")
    r.wait(lambda: all((h.root / "held").exists() for h in r.staging),
           what="staging's hosts held before the switch")
    staging = r.deployment_of("staging", sha, "running")
    browser.get(f"{r.web}/deployments/{staging['id']}")
    wait_until(browser, lambda b: text(b, "#following") == "following live", "log followed")
    wait_until(browser, lambda b: text(b, "#live .state .badge") == "running", "running")
    assert "went-live-marker" not in text(browser, "#log")
    browser.execute_script("window.sameDocument = true;")

    for host in r.staging:
        (host.root / "go").touch()
    wait_until(browser, lambda b: "went-live-marker" in text(b, "#log"), "the log followed")
    wait_until(browser, lambda b: text(b, "#live .state .badge") == "succeeded",
               "staging succeeded on the page")
    wait_until(browser, lambda b: text(b, "#following") == "finished: succeeded",
               "the stream's end")
    assert browser.execute_script("return window.sameDocument === true;")  # never reloaded
    # The part that changes is replaced as it refreshes: read it whole, in one script.
    wait_until(browser, lambda b: b.execute_script(
        "return [...document.querySelectorAll('#hosts tr[data-host] .badge')]"
        ".map(e => e.textContent)") == ["succeeded", "succeeded"], "each host succeeded")

    parked = r.deployment_of("production", sha, "awaiting_approval")
    browser.get(f"{r.web}/deployments/{parked['id']}")  # waits: polled, not streamed
    wait_until(browser, lambda b: b.find_element(By.ID, "review"), "review and approve")
    assert browser.find_element(By.ID, "log").get_attribute("data-stream") is None
    browser.get(f"{r.web}/")
    browser.find_element(By.CSS_SELECTOR, f"#recent tr[data-id='{parked['id']}'] a.approve-link"
                         ).click()
    wait_until(browser, lambda b: b.find_element(By.ID, "commits"), "the approval page")
    commits = text(browser, "#commits")
    assert sha[:7] in commits and "Ship v1" in commits and "Conveyor Tests" in commits
    browser.find_element(By.CSS_SELECTOR, "button[data-action='approve']").click()

    wait_until(browser, lambda b: f"Approved: deployment {parked['id']}, by admin"
               in text(b, ".flash"), "approved")
    wait_until(browser, lambda b: text(b, "#live .state .badge") == "succeeded",
               "production succeeded on the page")
    assert "by admin" in text(browser, "#approved")
    live = r.get(f"/deployments/{parked['id']}")
    assert (live["state"], live["approved_by"]) == ("succeeded", "admin")
    assert r.served(r.production) == ["v1\n", "v1\n"]

    browser.get(f"{r.web}/")
    for environment in ("staging", "production"):
        card = text(browser, f"#env-shop-{environment}")
        assert sha[:7] in card and live["release"] in text(browser, "#env-shop-production")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
