"""The step builders: what runs on a host, as plain values."""

from __future__ import annotations

import subprocess

import pytest

import deploy_scripts
from workers import remote
from workers.remote import InvalidStepError, Step

PATH = "/srv/shop"
SHA256 = "a" * 64
RELEASE = "20261128T221500Z-abc1234"
EVIL = "refs/heads/$(rm -rf /)`id`;'quoted' \"double\" \\back\nnew line $HOME ${IFS}"


def run_sh(step: Step) -> subprocess.CompletedProcess[str]:
    """Feed a step's stdin text to a real local sh, as the transports do."""
    return subprocess.run(
        ["sh", "-s", "--", *step.args],
        input=remote.stdin_text(step),
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def test_probe_carries_the_scripts_and_validated_arguments() -> None:
    step = remote.probe(PATH, SHA256, 1234)
    assert (step.name, step.args, dict(step.env)) == ("probe", (PATH, SHA256, "1234"), {})
    assert step.script == deploy_scripts.script("common") + "\n" + deploy_scripts.script("probe")
    assert step.describe() == f"probe /srv/shop {SHA256} 1234"
    assert remote.probe(PATH, SHA256, 0, look=True).args == (PATH, SHA256, "0", "look")


def test_builders_put_arguments_in_order() -> None:
    env = {"CONVEYOR_REF": "refs/heads/main"}
    assert remote.prepare(PATH, SHA256, RELEASE, env).args == (PATH, SHA256, RELEASE)
    assert remote.activate(PATH, RELEASE, env).args == (PATH, RELEASE)
    assert remote.rollback(PATH, RELEASE, env).args == (PATH, RELEASE)
    assert remote.rollback(PATH, None, env).args == (PATH, "")
    assert remote.discard(PATH, RELEASE).args == (PATH, RELEASE)
    assert remote.prune(PATH, 5).args == (PATH, "5")
    assert remote.prune(PATH, 5, protect=[RELEASE]).args == (PATH, "5", RELEASE)
    assert remote.prepare(PATH, SHA256, RELEASE, env).env == env


@pytest.mark.parametrize(
    "path", ["srv/shop", "/", "/srv/shop/", "/srv/../etc", "/srv//shop", "/srv/./shop", "/srv/a b"]
)
def test_a_path_that_is_not_absolute_and_plain_is_refused(path: str) -> None:
    with pytest.raises(InvalidStepError, match="absolute and normalised"):
        remote.probe(path, SHA256, 0)


@pytest.mark.parametrize("sha256", ["a" * 63, "A" * 64, "g" * 64, "a" * 64 + "\n", ""])
def test_a_bad_sha256_is_refused(sha256: str) -> None:
    with pytest.raises(InvalidStepError, match="sha256"):
        remote.prepare(PATH, sha256, RELEASE, {})
    with pytest.raises(InvalidStepError, match="sha256"):
        remote.artifact_path(PATH, sha256)


@pytest.mark.parametrize("release", ["20261128T221500Z-abc123", "20261128-abc1234", "../x", ""])
def test_a_bad_release_id_is_refused(release: str) -> None:
    with pytest.raises(InvalidStepError, match="release id"):
        remote.activate(PATH, release, {})
    with pytest.raises(InvalidStepError, match="release id"):
        remote.prune(PATH, 3, protect=[release])


@pytest.mark.parametrize("keep", [0, -1, True, 2.5])
def test_keep_must_be_a_whole_number_at_least_one(keep: object) -> None:
    with pytest.raises(InvalidStepError, match="keep_releases"):
        remote.prune(PATH, keep)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["conveyor_ref", "1REF", "REF-X", "REF X", "", "A=B", "IFS"])
def test_a_bad_env_name_is_refused(name: str) -> None:
    with pytest.raises(InvalidStepError, match="environment variable"):
        remote.activate(PATH, RELEASE, {name: "x"})


def test_an_env_value_with_a_nul_is_refused() -> None:
    with pytest.raises(InvalidStepError, match="NUL"):
        remote.activate(PATH, RELEASE, {"CONVEYOR_REF": "a\0b"})


def test_an_argument_with_a_control_character_is_refused() -> None:
    with pytest.raises(InvalidStepError, match="control characters"):
        Step("x", "true", ("a\nb",))


def test_a_step_is_immutable_even_its_env() -> None:
    env = {"CONVEYOR_REF": "refs/heads/main"}
    step = remote.activate(PATH, RELEASE, env)
    env["CONVEYOR_REF"] = "changed"
    assert step.env["CONVEYOR_REF"] == "refs/heads/main"
    with pytest.raises(TypeError):
        step.env["CONVEYOR_REF"] = "x"  # type: ignore[index]


def test_artifact_path() -> None:
    assert remote.artifact_path(PATH, SHA256) == f"/srv/shop/.conveyor/artifacts/{SHA256}.tar.gz"


def test_untrusted_env_values_reach_the_script_verbatim() -> None:
    step = Step(
        "show",
        'printf "%s|%s" "$CONVEYOR_REF" "$CONVEYOR_MESSAGE"',
        env={"CONVEYOR_REF": EVIL, "CONVEYOR_MESSAGE": "it's a 'test' ü"},
    )
    result = run_sh(step)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"{EVIL}|it's a 'test' ü"


def test_env_values_never_appear_in_the_arguments() -> None:
    step = remote.prepare(PATH, SHA256, RELEASE, {"CONVEYOR_REF": EVIL})
    assert all(EVIL not in arg for arg in step.args)
    assert EVIL not in step.describe()


def test_arguments_reach_the_script_as_positional_parameters() -> None:
    result = run_sh(Step("args", 'printf "%s|" "$#" "$@"', ("a b", "c'd", "$(x)")))
    assert result.stdout == "3|a b|c'd|$(x)|"


def test_a_script_cut_short_in_transit_runs_nothing() -> None:
    text = remote.stdin_text(Step("two", "echo first\necho second"))
    cut = text[: text.index("echo second")]
    result = subprocess.run(["sh", "-s"], input=cut, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "first" not in result.stdout


def test_commands_of_a_script_cannot_read_the_script() -> None:
    result = run_sh(Step("stdin", "cat\necho after"))
    assert (result.returncode, result.stdout) == (0, "after\n")


def test_parse_probe() -> None:
    assert remote.parse_probe(f"current={RELEASE}\nartifact=yes\n") == remote.ProbeResult(
        current=RELEASE, has_artifact=True
    )
    assert remote.parse_probe("current=\nartifact=no\n") == remote.ProbeResult(None, False)
    with pytest.raises(ValueError, match="probe printed"):
        remote.parse_probe("nonsense")


def test_parse_fields_ignores_other_lines() -> None:
    assert remote.parse_fields("warning: x\nprevious=\nremoved=a=b\n") == {
        "previous": "",
        "removed": "a=b",
    }


def test_operator_text_travels_as_unexported_params() -> None:
    hooks = ["pip install 'x' && echo \"$CONVEYOR_REF\"", "echo two\nlines"]
    step = remote.prepare(PATH, SHA256, RELEASE, {"CONVEYOR_REF": EVIL},
                          shared=[".env", "var/uploads/"], hooks=hooks)
    assert step.args == (PATH, SHA256, RELEASE)
    assert dict(step.params) == {
        "shared_count": "2", "shared_1": ".env", "shared_2": "var/uploads/",
        "before_activate_count": "2", "before_activate_1": hooks[0],
        "before_activate_2": hooks[1],
    }
    shown = Step("show", 'printf "%s|%s|%s" "$before_activate_1" "$before_activate_2"'
                 ' "$(sh -c \'echo "${before_activate_1-unset}"\')"', params=step.params)
    result = run_sh(shown)
    assert result.stdout == f"{hooks[0]}|{hooks[1]}|unset"  # set for the script, not exported


def test_after_activate_carries_hooks_and_the_health_check() -> None:
    from app.config import Healthcheck

    check = Healthcheck(command="curl -fsS http://127.0.0.1/health", retries=3, interval=2,
                        timeout=10)
    step = remote.after_activate(PATH, RELEASE, {}, hooks=["reload"], healthcheck=check)
    assert step.args == (PATH, RELEASE)
    assert dict(step.params) == {
        "after_activate_count": "1", "after_activate_1": "reload",
        "health_command": check.command, "health_retries": "3", "health_interval": "2",
        "health_timeout": "10",
    }
    assert remote.healthcheck_seconds(check) == 3 * (10 + 5) + 2 * 2
    assert remote.healthcheck_seconds(None) == 0
    assert dict(remote.rollback(PATH, RELEASE, {}, hooks=["reload"]).params) == {
        "after_activate_count": "1", "after_activate_1": "reload"}


@pytest.mark.parametrize("entry", [".env", "var/uploads", "var/uploads/", "a/b.c/d@e+f"])
def test_a_shared_entry_is_a_plain_relative_path(entry: str) -> None:
    assert remote.check_shared(entry) == entry


@pytest.mark.parametrize("entry", ["", "/etc", "../x", "a/../b", "./x", "a//b", ".", "a/.",
                                   "a b", "a\nb", "$(x)"])
def test_a_shared_entry_that_could_lead_elsewhere_is_refused(entry: str) -> None:
    with pytest.raises(InvalidStepError, match="shared entry"):
        remote.prepare(PATH, SHA256, RELEASE, {}, shared=[entry])


def test_a_bad_param_is_refused() -> None:
    with pytest.raises(InvalidStepError, match="parameter name"):
        Step("x", "true", params={"Hook": "x"})
    with pytest.raises(InvalidStepError, match="NUL"):
        Step("x", "true", params={"hook": "a\0b"})


def test_parse_prepare() -> None:
    assert remote.parse_prepare(f"previous={RELEASE}\nrelease=x\n") == remote.Prepared(
        previous=RELEASE, release="x")
    assert remote.parse_prepare("previous=\n") == remote.Prepared(None, None)


def test_a_watch_round_is_one_attempt_of_the_health_check_without_hooks() -> None:
    from app.config import Healthcheck

    check = Healthcheck(command="curl -fsS http://127.0.0.1/health", retries=10, interval=2,
                        timeout=7, watch=120)
    step = remote.healthcheck(PATH, RELEASE, {"CONVEYOR_SHA": "abc"}, check)
    assert (step.name, step.args, dict(step.env)) == \
        ("healthcheck", (PATH, RELEASE), {"CONVEYOR_SHA": "abc"})
    assert dict(step.params) == {
        "after_activate_count": "0", "health_command": check.command, "health_retries": "1",
        "health_interval": "2", "health_timeout": "7",
    }
    assert step.script == remote.after_activate(PATH, RELEASE, {}).script


def test_incremental_steps_and_their_files() -> None:
    env = {"CONVEYOR_REF": "refs/heads/main"}
    previous = "20261127T221500Z-def5678"
    files = "b" * 64
    assert remote.lacks(PATH, SHA256).args == (PATH, SHA256)
    assert remote.prepare(PATH, SHA256, RELEASE, env, assemble_from=(previous, files)).args \
        == (PATH, SHA256, RELEASE, previous, files)
    with pytest.raises(InvalidStepError):
        remote.prepare(PATH, SHA256, RELEASE, env, assemble_from=("../x", files))
    assert remote.files_path(PATH, SHA256) == f"/srv/shop/.conveyor/artifacts/{SHA256}.files"
    assert remote.delta_path(PATH, SHA256) == \
        f"/srv/shop/.conveyor/artifacts/{SHA256}.delta.tar"


def test_parse_lacks_reads_the_names_and_refuses_other_output() -> None:
    found = remote.parse_lacks("previous=20261127T221500Z-def5678\nusable=yes\n"
                               "lacks=dist/a.txt\nlacks=.conveyor-release.json\n")
    assert found == remote.Lacks("20261127T221500Z-def5678", True,
                                 ("dist/a.txt", ".conveyor-release.json"))
    assert remote.parse_lacks("previous=\nusable=no\n") == remote.Lacks(None, False, ())
    with pytest.raises(ValueError):
        remote.parse_lacks("something else\n")
