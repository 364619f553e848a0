"""The pipeline file: valid files give frozen objects; every error names file, line and key path."""

from pathlib import Path

import pytest

from app import config

GOOD = """\
server:
  public_url: https://deploy.example.com/
ssh:
  key: ${SSH_KEY}
  known_hosts: /etc/conveyor/known_hosts
  connect_timeout: 5s
  command_timeout: 15m
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${SHOP_SECRET}
    status:
      api_url: https://api.github.com
      token: ${GITHUB_TOKEN}
    build:
      commands: ["make dist"]
      artifact: dist
      timeout: 1h
      env: {A: "1"}
    environments:
      staging:
        branches: [main, "release/*"]
        hosts:
          - deploy@10.0.0.11
          - deploy@10.0.0.12:2222
          - {host: deploy@10.0.0.13, host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA"}
          - local
        path: /srv/shop
        keep_releases: 3
"""
ENV = {"SSH_KEY": "/keys/id", "SHOP_SECRET": "s3cret", "GITHUB_TOKEN": "ghp_x"}


def parse(text: str, env: dict[str, str] | None = None) -> config.Config:
    return config.parse(text, Path("conveyor.yml"), ENV if env is None else env)


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(config.ConfigError) as caught:
        parse(text, env)
    return caught.value.problems


def test_a_valid_file_is_read_with_interpolation_and_durations() -> None:
    conf = parse(GOOD)
    assert conf.public_url == "https://deploy.example.com"
    assert conf.ssh.key == Path("/keys/id")
    assert (conf.ssh.connect_timeout, conf.ssh.command_timeout) == (5, 900)
    shop = conf.projects["shop"]
    assert shop.webhook_secret == "s3cret"
    assert shop.status and shop.status.token == "ghp_x"
    assert shop.build.timeout == 3600 and shop.build.artifact == ("dist",)
    staging = shop.environments["staging"]
    assert [h.spec for h in staging.hosts] == [
        "deploy@10.0.0.11", "deploy@10.0.0.12:2222", "deploy@10.0.0.13", "local"]
    assert staging.hosts[1].port == 2222 and staging.hosts[0].port == 22
    assert staging.hosts[2].host_key == "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA"
    assert staging.hosts[3].is_local
    assert conf.find_project("github", "ACME/Shop") is shop
    # Status tokens and webhook secrets whatever their length; `${SSH_KEY}` as a value of 6+
    # characters that came from the environment (SPEC §7: every such value is a secret).
    assert set(conf.secrets()) == {"s3cret", "ghp_x", "/keys/id"}


def test_a_misspelled_key_names_file_line_and_key_path() -> None:
    found = problems(GOOD.replace("keep_releases: 3", "keep_release: 3"))
    assert found == [
        "conveyor.yml:30: projects.shop.environments.staging.keep_release: unknown key "
        "'keep_release'; allowed here: approval, batch, branches, healthcheck, hooks, hosts, "
        "keep_releases, parallel, path, promote_from, shared, tags, url"]


def test_a_missing_variable_is_named() -> None:
    env = {k: v for k, v in ENV.items() if k != "GITHUB_TOKEN"}
    assert problems(GOOD, env) == [
        "conveyor.yml:15: projects.shop.status.token: environment variable GITHUB_TOKEN "
        "is not set"]


def test_a_bad_host_and_bad_values_are_all_reported_with_lines() -> None:
    text = (GOOD.replace("deploy@10.0.0.12:2222", "10.0.0.12")
            .replace("timeout: 1h", "timeout: soon")
            .replace("provider: github", "provider: bitbucket"))
    assert problems(text) == [
        "conveyor.yml:10: projects.shop.provider: must be one of github, gitlab, gitea, "
        "not 'bitbucket'",
        "conveyor.yml:19: projects.shop.build.timeout: must be a duration like 90, 90s, 15m "
        "or 1h, not 'soon'",
        "conveyor.yml:26: projects.shop.environments.staging.hosts[1]: '10.0.0.12' is not "
        "user@host[:port] or local",
    ]


def test_required_keys_relative_paths_and_escaping_artifacts_are_refused() -> None:
    text = (GOOD.replace("    webhook_secret: ${SHOP_SECRET}\n", "")
            .replace("path: /srv/shop", "path: srv/shop")
            .replace("artifact: dist", "artifact: ../dist"))
    found = problems(text)
    assert "conveyor.yml:10: projects.shop.webhook_secret: is required" in found
    assert any("projects.shop.environments.staging.path: must be an absolute path" in p
               for p in found)
    assert any("projects.shop.build.artifact[0]: '../dist' must be a path inside" in p
               for p in found)


def test_broken_yaml_names_the_line() -> None:
    assert problems("projects:\n  shop: [\n")[0].startswith("conveyor.yml:3: not valid YAML")


def test_durations() -> None:
    assert [config.parse_duration(v) for v in ("90", "90s", "15m", "1h", 30)] == \
        [90, 90, 900, 3600, 30]
    assert config.parse_duration("1d") is None


SECRETS = """\
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: hook-secret
    clone_url: https://x-access-token:${CLONE_TOKEN}@github.com/acme/shop.git
    build:
      commands: ["echo ${LONG_VALUE} ${SHORT}", "git ls-remote https://bot:inline-token@h/x",
                 "git ls-remote ssh://git@github.com/acme/shop.git"]
      artifact: dist
    environments:
      staging: {branches: [main], hosts: [local], path: /srv/shop}
"""


def test_every_var_value_of_six_characters_and_every_url_token_is_a_secret() -> None:
    conf = parse(SECRETS, {"CLONE_TOKEN": "ghs_clone", "LONG_VALUE": "sixsix", "SHORT": "five5"})
    # A value under 6 characters is not one: `main`, `true` or `3` would be starred in every
    # line that says them, hiding what the line says and protecting nothing.
    assert set(conf.secrets()) == {"hook-secret", "ghs_clone", "sixsix", "inline-token"}


def test_a_url_login_is_not_a_secret_but_a_token_alone_over_https_is() -> None:
    assert config.url_tokens("ssh://git@github.com/a.git https://ghp_tokenonly@github.com/a") \
        == {"ghp_tokenonly"}


def test_the_whole_example_of_spec_section_3_is_accepted() -> None:
    # SPEC's pinned key is a placeholder ("AAAA..."), which is no key: a real one stands in.
    text = (Path(__file__).parent.parent / "fixtures/spec-example.yml").read_text().replace(
        "AAAAC3NzaC1lZDI1NTE5AAAA...", "AAAAC3NzaC1lZDI1NTE5AAAAIBWbRfjJXmOdVgJ8NAp5IY0QJ7m9z1")
    env = {"CONVEYOR_SSH_KEY": "/etc/conveyor/id_ed25519", "SHOP_WEBHOOK_SECRET": "s3cret-hook",
           "GITHUB_TOKEN": "ghp_example_token", "SLACK_WEBHOOK_URL": "https://hooks.slack.com/x"}
    conf = config.parse(text, Path("conveyor.yml"), env)
    shop = conf.projects["shop"]
    production = shop.environments["production"]
    assert (production.promote_from, production.approval) == ("staging", "manual")
    assert shop.environments["staging"].approval == "auto"
    assert shop.notify == (config.Notify(slack="https://hooks.slack.com/x",
                                         events=("failed", "succeeded", "awaiting_approval")),)
    assert conf.artifacts.store == "local" and conf.artifacts.s3["bucket"] == "conveyor-artifacts"


def test_a_promotion_names_an_environment_and_an_approval_is_auto_or_manual() -> None:
    found = problems(GOOD.replace("keep_releases: 3", "keep_releases: 3\n        promote_from: qa"))
    assert len(found) == 1 and found[0].endswith(
        "staging.promote_from: names no environment of this project: 'qa' (environments: none)")
    found = problems(GOOD.replace("keep_releases: 3", "keep_releases: 3\n        approval: later"))
    assert found[0].endswith("approval: must be one of auto, manual, not 'later'")


def with_healthcheck(settings: str) -> str:
    """GOOD with `healthcheck: {command: ..., <settings>}` on its last line, staging's."""
    return GOOD + f"        healthcheck: {{command: 'curl -fsS localhost/health', {settings}}}\n"


def test_a_health_check_watch_is_a_duration_and_zero_or_absent_means_none() -> None:
    staging = parse(with_healthcheck("watch: 2m")).projects["shop"].environments["staging"]
    assert staging.healthcheck is not None and staging.healthcheck.watch == 120
    for settings, watch in (("watch: 0", 0), ("watch: 45s", 45), ("retries: 3", 0)):
        found = parse(with_healthcheck(settings)).projects["shop"].environments["staging"]
        assert found.healthcheck is not None and found.healthcheck.watch == watch, settings


def test_a_bad_watch_names_its_line_and_zero_stays_refused_elsewhere() -> None:
    line = GOOD.count("\n") + 1
    for value in ("-1", "soon"):
        assert problems(with_healthcheck(f"watch: {value}")) == [
            f"conveyor.yml:{line}: projects.shop.environments.staging.healthcheck.watch: must"
            f" be a duration like 0 (none), 90, 90s, 15m or 1h, not {value!r}"]
    assert problems(with_healthcheck("interval: 0")) == [
        f"conveyor.yml:{line}: projects.shop.environments.staging.healthcheck.interval: must"
        " be a duration like 90, 90s, 15m or 1h, not '0'"]


def test_deployments_are_recorded_where_the_forge_can_and_refused_clearly_elsewhere() -> None:
    deployments = GOOD.replace("token: ${GITHUB_TOKEN}",
                               "token: ${GITHUB_TOKEN}\n      deployments: true")
    shop = parse(deployments.replace("keep_releases: 3",
                                     "keep_releases: 3\n        url: https://s.example")
                 ).projects["shop"]
    assert shop.status and shop.status.deployments and shop.status.records_deployments
    assert shop.environments["staging"].url == "https://s.example"
    assert problems(deployments.replace("provider: github", "provider: gitea")) == [
        "conveyor.yml:16: projects.shop.status.deployments: is not available: Gitea has no"
        " Deployments API (go-gitea/gitea#30079); commit statuses are still sent"]
    assert problems(deployments.replace("provider: github", "provider: gitlab")) == [
        "conveyor.yml:16: projects.shop.status.deployments: is GitHub's; GitLab records"
        " deployments with environments: true"]
    environments = deployments.replace("deployments: true", "environments: true")
    gitlab = parse(environments.replace("provider: github", "provider: gitlab"))
    assert gitlab.projects["shop"].status.environments  # type: ignore[union-attr]
    assert problems(environments) == [
        "conveyor.yml:16: projects.shop.status.environments: is for GitLab's environments;"
        " GitHub takes deployments: true"]
    assert problems(GOOD.replace("keep_releases: 3", "keep_releases: 3\n        url: s.example")
                    ) == ["conveyor.yml:31: projects.shop.environments.staging.url: must be an"
                          " http(s) URL, not 's.example'"]
