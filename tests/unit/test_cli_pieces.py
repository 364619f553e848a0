"""The `conveyor` command's pure pieces: tables, lenient reading of answers, the sentence for
each refusal, Server-Sent Events parsing, the workers' command lines."""

from __future__ import annotations

import sys

import pytest

from app.cli import operations, processes, reading
from app.cli.client import Client, Event, parse_events, refusal
from app.cli.output import CommandError, cell, duration, percent, pick, sentence, table, when

URL = "http://conveyor.example:8000"


def test_a_table_aligns_columns_and_shows_missing_values_as_a_dash() -> None:
    text = table(("ID", "STATE", "REF"), [[1, "succeeded", "refs/heads/main"],
                                          [12, None, ""], [3, "queued"]])
    assert text.splitlines() == [
        "ID  STATE      REF",
        "1   succeeded  refs/heads/main",
        "12  -          -",
        "3   queued",
    ]


def test_cells_are_one_line() -> None:
    assert cell("two\nlines  here") == "two lines here"
    assert (cell(True), cell(0.5), cell([]), cell(0)) == ("yes", "0.50", "-", "0")


def test_pick_reads_leniently() -> None:
    data = {"projects": [{"name": "shop", "environments": None}]}
    assert pick(data, "projects", 0, "name") == "shop"
    assert pick(data, "projects", 1, "name") is None
    assert pick(data, "projects", 0, "environments", 0) is None
    assert pick("not a dict", "projects") is None


def test_moments_durations_and_ratios() -> None:
    assert when("2026-12-05T20:41:07.5+01:00") == "2026-12-05 19:41:07Z"
    assert when("yesterday") == "yesterday"
    assert when(None) is None
    assert [duration(s) for s in (42, 125, 3 * 3600 + 125, 2 * 86400 + 4 * 3600)] == \
        ["42s", "2m 5s", "3h 2m", "2d 4h"]
    assert (duration("12"), duration(True), percent(0.125), percent(None)) == \
        (None, None, "12.5%", None)


@pytest.mark.parametrize(("status", "body", "missing", "expected"), [
    (401, {"error": "unauthorized"}, None,
     (2, f"Conveyor at {URL} refused the token: CONVEYOR_API_TOKEN is not one of its API"
         " tokens")),
    (404, {"error": "Not Found", "detail": "The requested URL was not found"},
     "there is no deployment 9", (1, "there is no deployment 9")),
    (404, {"error": "there is no environment 'qa' in project 'shop'", "detail": None},
     "there is no deployment 9", (1, "there is no environment 'qa' in project 'shop'")),
    (404, None, "there is no build 9", (1, "there is no build 9")),
    (404, {"error": "not_found", "detail": "there is no project 'bike'"}, "no such route",
     (1, "there is no project 'bike'")),
    (404, {"error": "not_found", "detail": "no API route /api/dora; see /api/openapi.json"},
     "Conveyor has no /api/dora yet", (1, "Conveyor has no /api/dora yet")),
    (503, {"error": "service_unavailable",
           "detail": "the API is not enabled: set CONVEYOR_API_TOKEN for the web process"}, None,
     (2, f"the API of Conveyor at {URL} is not enabled: set CONVEYOR_API_TOKEN for its web"
         " process")),
    (409, {"error": "deployment 9 is succeeded, not awaiting approval", "detail": None}, None,
     (1, "deployment 9 is succeeded, not awaiting approval")),
    (400, {"error": "Bad Request", "detail": "sha must be a full\n40-character commit id"}, None,
     (2, "sha must be a full 40-character commit id")),
    (503, {"error": "the API is not enabled", "detail": "set CONVEYOR_API_TOKEN"}, None,
     (2, f"the API of Conveyor at {URL} is not enabled: set CONVEYOR_API_TOKEN for its web"
         " process")),
    (502, None, None, (1, f"Conveyor at {URL} failed (502)")),
    (418, None, None, (1, f"Conveyor at {URL} answered 418")),
])
def test_each_refusal_is_one_sentence_and_an_exit_status(
        status: int, body: object, missing: str | None, expected: tuple[int, str]) -> None:
    assert refusal(status, body, URL, missing) == expected


@pytest.mark.parametrize(("environ", "message"), [
    ({"CONVEYOR_API_TOKEN": "t", "CONVEYOR_URL": "ftp://x"}, "CONVEYOR_URL must be an http"),
    ({"CONVEYOR_API_TOKEN": "t", "CONVEYOR_URL": "localhost:8000"}, "CONVEYOR_URL must be"),
    ({"CONVEYOR_URL": URL}, f"set CONVEYOR_API_TOKEN to an API token of the Conveyor at {URL}"),
])
def test_an_unusable_url_or_no_token_is_a_configuration_error(
        environ: dict[str, str], message: str) -> None:
    with pytest.raises(CommandError) as caught:
        Client.from_env(environ)
    assert caught.value.status == 2 and str(caught.value).startswith(message)


def test_the_client_defaults_to_the_local_web_process() -> None:
    assert Client.from_env({"CONVEYOR_API_TOKEN": " t "}) == Client("http://127.0.0.1:8000", "t")
    assert Client.from_env({"CONVEYOR_API_TOKEN": "t", "CONVEYOR_URL": URL + "/"}).url == URL


def test_server_sent_events_are_parsed_and_heartbeats_skipped() -> None:
    stream = ["id: 7", "event: line", 'data: {"id": 7, "text": "step 1"}', "",
              ": still here", "", "data: plain", "data: text", "",
              "event: end", 'data: {"state": "succeeded"}', ""]
    assert list(parse_events(iter(stream))) == [
        Event("line", {"id": 7, "text": "step 1"}), Event("message", "plain\ntext"),
        Event("end", {"state": "succeeded"})]


def test_a_deployment_in_one_line() -> None:
    answer = {"id": 4, "project": "shop", "environment": "staging", "state": "failed",
              "sha": "c0ffee" + "1" * 34, "ref": "refs/heads/main", "build": 2,
              "release": "20261205T204107Z-c0ffee111111", "error": "health check\nfailed"}
    assert operations.about(answer) == (
        "deployment 4 of shop to staging failed: commit c0ffee111111 (refs/heads/main),"
        " build 2, release 20261205T204107Z-c0ffee111111, health check failed")
    assert operations.about({}) == "deployment - of - to - in an unknown state: commit -"


def test_finish_without_wait_shows_the_answer_and_exits_0() -> None:
    said: list[str] = []
    answer = {"id": 4, "project": "shop", "environment": "staging", "state": "queued"}
    assert operations.finish(Client(URL, "t"), answer, wait=False, json=True,
                             say=said.append) == 0
    assert said == ['{\n  "id": 4,\n  "project": "shop",\n  "environment": "staging",\n'
                    '  "state": "queued"\n}']


@pytest.mark.parametrize(("ref", "sha", "expected"), [
    ("main", None, {"ref": "main"}),
    (None, "a" * 40, {"sha": "a" * 40}),
])
def test_without_the_pipeline_file_the_server_resolves_what_is_given(
        ref: str | None, sha: str | None, expected: dict[str, str]) -> None:
    assert operations._as_given(ref, sha) == expected


@pytest.mark.parametrize(("ref", "sha", "message"), [
    (None, None, "say what to deploy with --ref or --sha"),
    (None, "abc1234", "--sha takes a full commit id of 40 lowercase hexadecimal digits here"),
])
def test_without_the_pipeline_file_a_default_or_short_sha_is_refused(
        ref: str | None, sha: str | None, message: str) -> None:
    with pytest.raises(CommandError) as caught:
        operations._as_given(ref, sha)
    assert caught.value.status == 2 and str(caught.value).startswith(message)


def test_status_rows_one_per_host_with_the_last_deployment_once() -> None:
    projects = [{"name": "shop", "environments": [
        {"name": "staging", "hosts": [
            {"host": "deploy@a", "release": "r2", "since": "2026-12-05T20:00:00+00:00"},
            {"host": "deploy@b"}],
         "last_deployment": {"id": 9, "state": "succeeded",
                             "created_at": "2026-12-05T19:59:00+00:00"}},
        {"name": "production"}]}]
    assert reading.live_rows(projects) == [
        ["shop", "staging", "deploy@a", "r2", "2026-12-05 20:00:00Z",
         "#9 succeeded 2026-12-05 19:59:00Z"],
        ["shop", "staging", "deploy@b", None, None, None],
        ["shop", "production", None, None, None, None]]
    recent = [{"id": 12, "project": "shop", "environment": "production", "state": "queued"},
              {"id": 11, "project": "shop", "environment": "production", "state": "failed"}]
    without = [{"name": "shop", "environments": [{"name": "production", "hosts": []}]}]
    assert reading.live_rows(without, recent) == [  # the server gives none: the newest known
        ["shop", "production", None, None, None, "#12 queued -"]]
    assert reading.dora_row({"project": "shop", "environment": "staging", "days": 30,
                             "deployment_frequency": 1.5, "lead_time_seconds": 3720,
                             "change_failure_rate": 0.1}) == \
        ["shop", "staging", 30, 1.5, "1h 2m", "10.0%", None]


def test_workers_default_to_every_queue_plus_one_for_notify() -> None:
    base = [sys.executable, "-m", "app.cli", "rq-worker"]
    assert processes.worker_argvs(2) == [
        [*base, "deploys", "builds", "notify", "--with-scheduler"],
        [*base, "deploys", "builds", "notify", "--with-scheduler"],
        [*base, "notify", "--with-scheduler"]]
    assert processes.worker_argvs(3, ["deploys", "deploys"]) == \
        [[*base, "deploys", "--with-scheduler"]] * 3


def test_a_sentence_is_one_line() -> None:
    assert sentence("cannot fetch:\n  fatal: no such\trepo\n") == \
        "cannot fetch: fatal: no such repo"
