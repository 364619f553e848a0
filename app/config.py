"""The pipeline file (`conveyor.yml`, SPEC §3) turned into frozen, validated objects.

Every problem is reported with the file, the line and the key path
(`projects.shop.environments.staging.hosts[1]`), and all problems are reported at once.
Unknown keys are errors: a typo must not silently switch off a safety setting.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

PROVIDERS = ("github", "gitlab", "gitea")
PULL_REQUESTS = ("off", "build", "build_forks")
APPROVALS = ("auto", "manual")  # continuous deployment, continuous delivery
# `status.deployments` on a forge without GitHub's Deployments API: what to say instead.
DEPLOYMENTS_ELSEWHERE = {
    "gitlab": "is GitHub's; GitLab records deployments with environments: true",
    "gitea": "is not available: Gitea has no Deployments API (go-gitea/gitea#30079);"
             " commit statuses are still sent",
}
# The events a chat notification may be sent on (SPEC §5).
CHAT_EVENTS = ("started", "succeeded", "failed", "rolled_back", "awaiting_approval",
               "build_failed")
STORES = ("local", "s3")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A `${VAR}` value shorter than this is not masked: `3`, `main` or `true` would be starred
# all over every log line and answer, hiding what they say and protecting nothing.
MIN_SECRET = 6
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"']+")
_DURATION = re.compile(r"^(\d+)\s*(s|m|h)?$")
_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# A shared entry as the deploy scripts take it (workers/remote.py checks it again).
_SHARED = re.compile(r"^(?!\.{1,2}(/|$))[A-Za-z0-9._@+-]+(/(?!\.{1,2}(/|$))[A-Za-z0-9._@+-]+)*/?$")
_HOST = re.compile(r"^(?P<user>[A-Za-z0-9_][A-Za-z0-9_.-]*)"
                   r"@(?P<hostname>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])"
                   r"(?::(?P<port>\d{1,5}))?$")
_HOST_KEY = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|rsa-sha2-(256|512)|ssh-rsa) "
                       r"[A-Za-z0-9+/]+={0,3}$")


class ConfigError(Exception):
    """The pipeline file is missing, unreadable or invalid; `problems` holds one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Host:
    """One deploy target: `user@host[:port]`, or `local` (the machine Conveyor runs on)."""

    spec: str
    user: str = ""
    hostname: str = ""
    port: int = 22
    host_key: str | None = None

    @property
    def is_local(self) -> bool:
        return self.spec == "local"


@dataclass(frozen=True)
class Healthcheck:
    """Runs on each host in the new release after after_activate; `retries` attempts in all."""

    command: str
    retries: int = 10
    interval: int = 2
    timeout: int = 30
    watch: int = 0      # seconds to keep checking after the last batch is live; 0 = no watch

    #: An attempt past its timeout gets TERM, then KILL this many seconds later.
    KILL_AFTER = 5

    @property
    def longest(self) -> int:
        """The longest the check can take on a host: every attempt timed out, and the waits."""
        attempts = self.retries * (self.timeout + self.KILL_AFTER)
        return attempts + (self.retries - 1) * self.interval

    @property
    def once(self) -> Healthcheck:
        """This check with a single attempt: one round of the watch after the switch."""
        return replace(self, retries=1)

    @property
    def watch_rounds(self) -> tuple[int, ...]:
        """When each round of the watch is due, in seconds after the last batch is live: every
        `interval` until `watch` (once, at `watch`, when that is shorter); none without one."""
        if self.watch <= 0:
            return ()
        interval = max(self.interval, 1)
        count = max(1, self.watch // interval)
        return tuple(min(n * interval, self.watch) for n in range(1, count + 1))

    def watch_longest(self, step_timeout: int) -> int:
        """The longest the watch can take: each round late by the ones before, each at its
        longest, and one more that hangs for a step's own deadline (`step_timeout`)."""
        if self.watch <= 0:
            return 0
        return self.watch + len(self.watch_rounds) * self.once.longest + step_timeout


@dataclass(frozen=True)
class Environment:
    name: str
    branches: tuple[str, ...]
    hosts: tuple[Host, ...]
    path: str
    keep_releases: int = 5
    parallel: int = 10
    tags: tuple[str, ...] = ()
    batch: int = 0                       # hosts activated per step; 0 = all together
    shared: tuple[str, ...] = ()         # linked from <path>/shared into each release
    before_activate: tuple[str, ...] = ()
    after_activate: tuple[str, ...] = ()
    healthcheck: Healthcheck | None = None
    promote_from: str | None = None      # takes only artifacts that succeeded there
    approval: str = "auto"               # manual: a person approves each deployment
    url: str | None = None               # where it is served (the forge's environment URL)


@dataclass(frozen=True)
class Build:
    commands: tuple[str, ...]
    artifact: tuple[str, ...]
    timeout: int = 900
    env: Mapping[str, str] = field(default_factory=dict)
    keep_artifacts: int = 10
    keep_failed_workspace: bool = False


@dataclass(frozen=True)
class Status:
    api_url: str
    token: str
    deployments: bool = False            # GitHub: also record Deployments
    environments: bool = False           # GitLab: also record deployments of environments

    @property
    def records_deployments(self) -> bool:
        """Whether deployments are recorded on the forge too (its Deployments or environments)."""
        return self.deployments or self.environments


@dataclass(frozen=True)
class Notify:
    """A chat webhook (Slack's format) and the events sent to it."""

    slack: str
    events: tuple[str, ...] = ("failed", "succeeded", "awaiting_approval")


@dataclass(frozen=True)
class Artifacts:
    """Where artifacts live between build and deploy: `local` (the data dir) or `s3`."""

    store: str = "local"
    s3: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Project:
    name: str
    provider: str
    repo: str
    webhook_secret: str
    build: Build
    environments: Mapping[str, Environment]
    clone_url: str | None = None
    status: Status | None = None
    pull_requests: str = "off"           # off | build | build_forks
    paths: tuple[str, ...] = ()          # monorepos: only pushes touching these
    notify: tuple[Notify, ...] = ()


@dataclass(frozen=True)
class Ssh:
    key: Path | None = None
    known_hosts: Path | None = None
    connect_timeout: int = 10
    command_timeout: int = 600


@dataclass(frozen=True)
class Config:
    public_url: str
    ssh: Ssh
    projects: Mapping[str, Project]
    path: Path
    artifacts: Artifacts = field(default_factory=Artifacts)
    # Every `${VAR}` value of MIN_SECRET characters or more, and every token of a URL.
    substituted: frozenset[str] = frozenset()

    def environment(self, project: str, environment: str) -> Environment | None:
        """The environment `environment` of project `project`, if both are configured."""
        found = self.projects.get(project)
        return found.environments.get(environment) if found else None

    def find_project(self, provider: str, repo: str) -> Project | None:
        """The project of `provider` whose repository is `repo` (case-insensitive, like forges)."""
        for project in self.projects.values():
            if project.provider == provider and project.repo.lower() == repo.lower():
                return project
        return None

    def secrets(self) -> tuple[str, ...]:
        """Every secret value the file holds, for masking in logs and answers: webhook
        secrets, status tokens, URL tokens and every `${VAR}` value (MIN_SECRET or longer)."""
        values = {p.webhook_secret for p in self.projects.values()}
        values |= {p.status.token for p in self.projects.values() if p.status}
        return tuple(sorted(v for v in values | self.substituted if v))


def url_tokens(text: str) -> set[str]:
    """The secrets of the URLs in `text`: `https://user:token@host/...` or
    `https://token@host/...` (over HTTP a user alone is a token; `ssh://git@` is a login).
    Those shorter than MIN_SECRET are left to `mask`, which stars the token of any URL."""
    tokens = set()
    for url in _URL.findall(text):
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        token_user = parts.scheme.lower() in ("http", "https")
        tokens.add(parts.password or (parts.username if token_user else None) or "")
    return {token for token in tokens if len(token) >= MIN_SECRET}


def load(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the pipeline file at `path`; raise ConfigError listing every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the pipeline file: {exc.strerror}"]) from None
    return parse(text, path, os.environ if environ is None else environ)


def parse(text: str, path: Path, environ: Mapping[str, str]) -> Config:
    """Validate the YAML `text` (read from `path`) into a Config."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", exc)
        raise ConfigError([f"{path}{line}: not valid YAML: {problem}"]) from None
    reader = _Reader(str(path), environ)
    config = reader.config(root, Path(path))
    if reader.problems or config is None:
        raise ConfigError(reader.problems or [f"{path}: the file is empty"])
    return config


def _key_node(node: Node | None, key: str) -> Node | None:
    """The value node of `key` in a mapping node (for a problem's line), else the node."""
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == key:
                return value_node
    return node


def parse_duration(value: str | int) -> int | None:
    """Seconds in `90`, `90s`, `15m` or `1h`; None when it is not a duration."""
    match = _DURATION.match(str(value).strip())
    return int(match.group(1)) * _UNITS[match.group(2)] if match else None


def parse_host(spec: str, host_key: str | None = None) -> Host | None:
    """A Host from `user@host[:port]` or `local`; None when the text is neither."""
    if spec == "local":
        return Host(spec="local")
    match = _HOST.match(spec)
    if not match or int(match.group("port") or 22) > 65535:
        return None
    hostname = match.group("hostname").strip("[]")
    return Host(spec=spec, user=match.group("user"), hostname=hostname,
                port=int(match.group("port") or 22), host_key=host_key)


class _Reader:
    """Walks the YAML node tree, collecting problems with their line and key path."""

    def __init__(self, filename: str, environ: Mapping[str, str]) -> None:
        self.filename = filename
        self.environ = environ
        self.problems: list[str] = []
        self.secrets: set[str] = set()

    def problem(self, node: Node | None, path: str, message: str) -> None:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        self.problems.append(f"{self.filename}{line}: {path or '(top level)'}: {message}")

    # -- shapes ---------------------------------------------------------------

    def mapping(self, node: Node | None, path: str, keys: Mapping[str, bool]) -> dict[str, Node]:
        """The entries of a mapping whose allowed keys are `keys` (name -> required)."""
        if node is None or (isinstance(node, ScalarNode) and node.value == ""):
            node_map: dict[str, Node] = {}
        elif not isinstance(node, MappingNode):
            self.problem(node, path, "must be a mapping of keys to values")
            return {}
        else:
            node_map = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                here = f"{path}.{key}" if path else key
                if key not in keys:
                    allowed = ", ".join(sorted(keys))
                    self.problem(key_node, here, f"unknown key {key!r}; allowed here: {allowed}")
                elif key in node_map:
                    self.problem(key_node, here, "is given twice")
                else:
                    node_map[key] = value_node
        for key, required in keys.items():
            if required and key not in node_map:
                self.problem(node, f"{path}.{key}" if path else key, "is required")
        return node_map

    def entries(self, node: Node, path: str) -> list[tuple[str, Node, Node]]:
        """(name, key node, value node) of a mapping with free names (projects, environments)."""
        if not isinstance(node, MappingNode):
            self.problem(node, path, "must be a mapping of names to settings")
            return []
        result = []
        for key_node, value_node in node.value:
            name = str(key_node.value)
            if not _NAME.match(name):
                self.problem(key_node, f"{path}.{name}",
                             "names may hold letters, digits, '.', '_' and '-'")
                continue
            result.append((name, key_node, value_node))
        return result

    def string(self, node: Node, path: str, *, secret: bool = False) -> str | None:
        """A scalar as text, with `${VAR}` replaced from the environment."""
        if not isinstance(node, ScalarNode) or node.value == "":
            self.problem(node, path, "must be a non-empty text value")
            return None
        missing = [name for name in _VAR.findall(node.value) if name not in self.environ]
        if missing:
            self.problem(node, path, f"environment variable {missing[0]} is not set")
            return None
        value = _VAR.sub(self._substitute, node.value)
        self.secrets |= url_tokens(value)
        if secret and not value:
            self.problem(node, path, "is empty")
            return None
        return value

    def _substitute(self, match: re.Match[str]) -> str:
        value = self.environ[match.group(1)]
        if len(value) >= MIN_SECRET:
            self.secrets.add(value)
        return value

    def strings(self, node: Node, path: str) -> tuple[str, ...]:
        """A list of texts; a single text is accepted as a list of one."""
        if isinstance(node, ScalarNode):
            value = self.string(node, path)
            return (value,) if value else ()
        if not isinstance(node, SequenceNode) or not node.value:
            self.problem(node, path, "must be a non-empty list of text values")
            return ()
        values = [self.string(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        return tuple(v for v in values if v)

    def integer(self, node: Node, path: str, minimum: int) -> int | None:
        value = self.string(node, path)
        if value is None:
            return None
        if not value.isdigit() or int(value) < minimum:
            self.problem(node, path, f"must be a whole number of at least {minimum}, not {value!r}")
            return None
        return int(value)

    def duration(self, node: Node, path: str, *, zero: bool = False) -> int | None:
        """A duration in seconds; 0 only where `zero` allows it (it means "none" there)."""
        value = self.string(node, path)
        if value is None:
            return None
        seconds = parse_duration(value)
        if seconds is None or (seconds == 0 and not zero):
            like = "0 (none), 90, 90s, 15m or 1h" if zero else "90, 90s, 15m or 1h"
            self.problem(node, path, f"must be a duration like {like}, not {value!r}")
            return None
        return seconds

    def boolean(self, node: Node, path: str) -> bool | None:
        if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:bool":
            return node.value.lower() in ("true", "yes", "on")
        self.problem(node, path, "must be true or false")
        return None

    def choice(self, node: Node, path: str, allowed: tuple[str, ...]) -> str | None:
        value = self.string(node, path)
        if value is not None and value not in allowed:
            self.problem(node, path, f"must be one of {', '.join(allowed)}, not {value!r}")
            return None
        return value

    def optional(self, nodes: Mapping[str, Node], key: str, path: str,
                 read: Callable[[Node, str], Any], default: Any) -> Any:
        """Read `key` with `read` when present; otherwise the default."""
        if key not in nodes:
            return default
        value = read(nodes[key], f"{path}.{key}")
        return default if value is None else value

    # -- sections -------------------------------------------------------------

    def config(self, root: Node | None, path: Path) -> Config | None:
        if root is None:
            return None
        top = self.mapping(root, "", {"server": False, "ssh": False, "artifacts": False,
                                      "projects": True})
        server = self.mapping(top.get("server"), "server", {"public_url": False})
        public_url = self.optional(server, "public_url", "server", self.string,
                                   "http://127.0.0.1:8000")
        ssh = self.ssh(top.get("ssh"))
        artifacts = self.artifacts(top.get("artifacts"))
        projects: dict[str, Project] = {}
        if "projects" in top:
            for name, _key, node in self.entries(top["projects"], "projects"):
                project = self.project(name, node, f"projects.{name}")
                if project:
                    projects[name] = project
        return Config(public_url=public_url.rstrip("/"), ssh=ssh, projects=projects, path=path,
                      artifacts=artifacts, substituted=frozenset(self.secrets))

    def artifacts(self, node: Node | None) -> Artifacts:
        nodes = self.mapping(node, "artifacts", {"store": False, "s3": False})
        store = self.optional(nodes, "store", "artifacts",
                              lambda n, p: self.choice(n, p, STORES), "local")
        s3: dict[str, str] = {}
        if "s3" in nodes:
            keys = {"bucket": True, "prefix": False, "endpoint_url": False, "region": False}
            found = self.mapping(nodes["s3"], "artifacts.s3", keys)
            for key, value in found.items():
                text = self.string(value, f"artifacts.s3.{key}")
                if text is not None:
                    s3[key] = text
        if store == "s3":
            if "s3" not in nodes:
                self.problem(nodes["store"], "artifacts.store",
                             "s3 needs artifacts.s3 with at least a bucket")
            else:
                self.s3_settings(nodes["s3"], s3)
        return Artifacts(store=store, s3=s3)

    def s3_settings(self, node: Node, s3: dict[str, str]) -> None:
        """Check what boto3 would only refuse at the first upload: the bucket's name, the
        prefix, the endpoint's URL. Credentials never come from the file."""
        fields = ({key.value: value for key, value in node.value}
                  if isinstance(node, MappingNode) else {})
        bucket = s3.get("bucket", "")
        if bucket and not _BUCKET.fullmatch(bucket):
            self.problem(fields.get("bucket"), "artifacts.s3.bucket",
                         f"{bucket!r} is not a bucket name (3-63 of a-z 0-9 . -, starting and"
                         " ending with a letter or digit)")
        prefix = s3.get("prefix", "")
        if prefix.startswith("/") or ".." in prefix.split("/"):
            self.problem(fields.get("prefix"), "artifacts.s3.prefix",
                         f"{prefix!r} must be a relative key prefix (shop/), without .. parts")
        endpoint = s3.get("endpoint_url", "")
        if endpoint and not re.fullmatch(r"https?://[^\s/@]+(/\S*)?", endpoint):
            self.problem(fields.get("endpoint_url"), "artifacts.s3.endpoint_url",
                         f"{endpoint!r} must be an http:// or https:// URL without credentials")

    def ssh(self, node: Node | None) -> Ssh:
        keys = {"key": False, "known_hosts": False, "connect_timeout": False,
                "command_timeout": False}
        nodes = self.mapping(node, "ssh", keys)
        key = self.optional(nodes, "key", "ssh", self.string, None)
        known_hosts = self.optional(nodes, "known_hosts", "ssh", self.string, None)
        return Ssh(
            key=Path(key) if key else None,
            known_hosts=Path(known_hosts) if known_hosts else None,
            connect_timeout=self.optional(nodes, "connect_timeout", "ssh", self.duration, 10),
            command_timeout=self.optional(nodes, "command_timeout", "ssh", self.duration, 600),
        )

    def project(self, name: str, node: Node, path: str) -> Project | None:
        keys = {"provider": True, "repo": True, "webhook_secret": True, "clone_url": False,
                "status": False, "build": True, "environments": True, "pull_requests": False,
                "paths": False, "notify": False}
        nodes = self.mapping(node, path, keys)
        before = len(self.problems)
        provider = self.optional(nodes, "provider", path,
                                 lambda n, p: self.choice(n, p, PROVIDERS), None)
        repo = self.optional(nodes, "repo", path, self.string, None)
        secret = self.optional(nodes, "webhook_secret", path,
                               lambda n, p: self.string(n, p, secret=True), None)
        clone_url = self.optional(nodes, "clone_url", path, self.string, None)
        pull_requests = self.optional(nodes, "pull_requests", path,
                                      lambda n, p: self.choice(n, p, PULL_REQUESTS), "off")
        paths = self.optional(nodes, "paths", path, self.strings, ())
        notify = self.notify(nodes["notify"], f"{path}.notify") if "notify" in nodes else ()
        status = (self.status(nodes["status"], f"{path}.status", provider)
                  if "status" in nodes else None)
        build = self.build(nodes["build"], f"{path}.build") if "build" in nodes else None
        environments: dict[str, Environment] = {}
        if "environments" in nodes:
            for env_name, _key, env_node in self.entries(nodes["environments"],
                                                         f"{path}.environments"):
                env = self.environment(env_name, env_node, f"{path}.environments.{env_name}")
                if env:
                    environments[env_name] = env
            self.promotions(nodes["environments"], environments, f"{path}.environments")
        if len(self.problems) > before or not (provider and repo and secret and build):
            return None
        return Project(name=name, provider=provider, repo=repo, webhook_secret=secret,
                       build=build, environments=environments, clone_url=clone_url,
                       status=status, pull_requests=pull_requests, paths=paths,
                       notify=notify)

    def notify(self, node: Node, path: str) -> tuple[Notify, ...]:
        if not isinstance(node, SequenceNode):
            self.problem(node, path, "must be a list of {slack: <webhook URL>, events: [...]}")
            return ()
        found = []
        for i, item in enumerate(node.value):
            here = f"{path}[{i}]"
            nodes = self.mapping(item, here, {"slack": True, "events": False})
            url = self.optional(nodes, "slack", here, lambda n, p: self.string(n, p, secret=True),
                                None)
            events = self.optional(nodes, "events", here, self.strings, Notify.events)
            unknown = [e for e in events if e not in CHAT_EVENTS]
            if unknown:
                self.problem(nodes["events"], f"{here}.events", f"{unknown[0]!r} is not an event;"
                             f" events: {', '.join(CHAT_EVENTS)}")
            if url and not url.startswith(("https://", "http://")):
                self.problem(nodes["slack"], f"{here}.slack", "must be an http(s) webhook URL")
            elif url and not unknown:
                found.append(Notify(slack=url, events=tuple(events)))
        return tuple(found)

    def status(self, node: Node, path: str, provider: str | None) -> Status | None:
        nodes = self.mapping(node, path, {"api_url": True, "token": True, "deployments": False,
                                          "environments": False})
        api_url = self.optional(nodes, "api_url", path, self.string, None)
        token = self.optional(nodes, "token", path,
                              lambda n, p: self.string(n, p, secret=True), None)
        deployments = self.optional(nodes, "deployments", path, self.boolean, False)
        environments = self.optional(nodes, "environments", path, self.boolean, False)
        if deployments and provider != "github":
            self.problem(nodes["deployments"], f"{path}.deployments", DEPLOYMENTS_ELSEWHERE.get(
                provider or "", "is for GitHub's Deployments API"))
            deployments = False
        if environments and provider != "gitlab":
            self.problem(nodes["environments"], f"{path}.environments",
                         "is for GitLab's environments; GitHub takes deployments: true")
            environments = False
        if not (api_url and token):
            return None
        return Status(api_url=api_url.rstrip("/"), token=token, deployments=deployments,
                      environments=environments)

    def build(self, node: Node, path: str) -> Build | None:
        keys = {"commands": False, "artifact": True, "timeout": False, "env": False,
                "keep_artifacts": False, "keep_failed_workspace": False}
        nodes = self.mapping(node, path, keys)
        commands = self.optional(nodes, "commands", path, self.strings, ())
        artifact = self.optional(nodes, "artifact", path, self.strings, ())
        for i, item in enumerate(artifact):
            if item.startswith("/") or ".." in Path(item).parts:
                self.problem(nodes["artifact"], f"{path}.artifact[{i}]",
                             f"{item!r} must be a path inside the checkout (no leading /, no ..)")
        env: dict[str, str] = {}
        if "env" in nodes:
            env_node = nodes["env"]
            if not isinstance(env_node, MappingNode):
                self.problem(env_node, f"{path}.env", "must be a mapping of names to values")
            else:
                for key_node, value_node in env_node.value:
                    value = self.string(value_node, f"{path}.env.{key_node.value}")
                    if value is not None:
                        env[str(key_node.value)] = value
        timeout = self.optional(nodes, "timeout", path, self.duration, 900)
        keep_artifacts = self.optional(nodes, "keep_artifacts", path,
                                       lambda n, p: self.integer(n, p, 1), 10)
        keep_failed = self.optional(nodes, "keep_failed_workspace", path, self.boolean, False)
        if not artifact:
            return None
        return Build(commands=commands, artifact=artifact, timeout=timeout, env=env,
                     keep_artifacts=keep_artifacts, keep_failed_workspace=keep_failed)

    def environment(self, name: str, node: Node, path: str) -> Environment | None:
        keys = {"branches": False, "tags": False, "hosts": True, "path": True,
                "keep_releases": False, "parallel": False, "batch": False, "shared": False,
                "hooks": False, "healthcheck": False, "promote_from": False, "approval": False,
                "url": False}
        nodes = self.mapping(node, path, keys)
        branches = self.optional(nodes, "branches", path, self.strings, ())
        tags = self.optional(nodes, "tags", path, self.strings, ())
        promote_from = self.optional(nodes, "promote_from", path, self.string, None)
        approval = self.optional(nodes, "approval", path,
                                 lambda n, p: self.choice(n, p, APPROVALS), "auto")
        if "branches" not in nodes and "tags" not in nodes and promote_from is None:
            self.problem(node, f"{path}.branches",
                         "is required (or tags, or promote_from): what deploys here?")
        hosts = self.hosts(nodes["hosts"], f"{path}.hosts") if "hosts" in nodes else ()
        target = self.optional(nodes, "path", path, self.string, None)
        if target is not None and not target.startswith("/"):
            self.problem(nodes["path"], f"{path}.path", f"must be an absolute path, not {target!r}")
            target = None
        keep = self.optional(nodes, "keep_releases", path,
                             lambda n, p: self.integer(n, p, 2), 5)
        parallel = self.optional(nodes, "parallel", path, lambda n, p: self.integer(n, p, 1), 10)
        batch = self.optional(nodes, "batch", path, lambda n, p: self.integer(n, p, 0), 0)
        shared = self.optional(nodes, "shared", path, self.strings, ())
        for i, item in enumerate(shared):
            if item.startswith("/") or ".." in Path(item).parts:
                self.problem(nodes["shared"], f"{path}.shared[{i}]",
                             f"{item!r} must be a path inside the release (no leading /, no ..)")
            elif not _SHARED.match(item):
                self.problem(nodes["shared"], f"{path}.shared[{i}]",
                             f"{item!r} may hold letters, digits and ._@+-/ only, no ./ parts"
                             " (a trailing / asks for a folder)")
        hooks = self.mapping(nodes.get("hooks"), f"{path}.hooks",
                             {"before_activate": False, "after_activate": False})
        before = self.optional(hooks, "before_activate", f"{path}.hooks", self.strings, ())
        after = self.optional(hooks, "after_activate", f"{path}.hooks", self.strings, ())
        healthcheck = (self.healthcheck(nodes["healthcheck"], f"{path}.healthcheck")
                       if "healthcheck" in nodes else None)
        url = self.optional(nodes, "url", path, self.string, None)
        if url is not None and not url.startswith(("https://", "http://")):
            self.problem(nodes["url"], f"{path}.url", f"must be an http(s) URL, not {url!r}")
        if not ((branches or tags or promote_from) and hosts and target):
            return None
        return Environment(name=name, branches=branches, hosts=hosts, path=target.rstrip("/"),
                           keep_releases=keep, parallel=parallel, tags=tags, batch=batch,
                           shared=shared, before_activate=before, after_activate=after,
                           healthcheck=healthcheck, promote_from=promote_from,
                           approval=approval, url=url)

    def promotions(self, node: Node, environments: Mapping[str, Environment],
                   path: str) -> None:
        """Each `promote_from` names another environment of the project, and no chain of
        them comes back to where it started."""
        lines = {str(key.value): value for key, value in getattr(node, "value", [])}
        for name, env in environments.items():
            source, seen = env.promote_from, {name}
            if source is None:
                continue
            here = f"{path}.{name}.promote_from"
            at = _key_node(lines.get(name), "promote_from")
            if source not in environments:
                known = ", ".join(sorted(set(environments) - {name})) or "none"
                self.problem(at, here, f"names no environment of this project: {source!r}"
                                       f" (environments: {known})")
                continue
            while source is not None:
                if source in seen:
                    self.problem(at, here, "promotions go round in a circle")
                    break
                seen.add(source)
                source = environments[source].promote_from if source in environments else None

    def healthcheck(self, node: Node, path: str) -> Healthcheck | None:
        keys = {"command": True, "retries": False, "interval": False, "timeout": False,
                "watch": False}
        nodes = self.mapping(node, path, keys)
        command = self.optional(nodes, "command", path, self.string, None)
        retries = self.optional(nodes, "retries", path, lambda n, p: self.integer(n, p, 1), 10)
        interval = self.optional(nodes, "interval", path, self.duration, 2)
        timeout = self.optional(nodes, "timeout", path, self.duration, 30)
        watch = self.optional(nodes, "watch", path,
                              lambda n, p: self.duration(n, p, zero=True), 0)
        if not command:
            return None
        return Healthcheck(command=command, retries=retries, interval=interval, timeout=timeout,
                           watch=watch)

    def hosts(self, node: Node, path: str) -> tuple[Host, ...]:
        if not isinstance(node, SequenceNode) or not node.value:
            self.problem(node, path, "must be a non-empty list of hosts")
            return ()
        hosts = []
        for i, item in enumerate(node.value):
            here = f"{path}[{i}]"
            host_key = None
            if isinstance(item, MappingNode):
                nodes = self.mapping(item, here, {"host": True, "host_key": False})
                if "host" not in nodes:
                    continue
                if "host_key" in nodes:
                    host_key = self.string(nodes["host_key"], f"{here}.host_key")
                    if host_key and not _HOST_KEY.match(host_key):
                        self.problem(nodes["host_key"], f"{here}.host_key",
                                     "must be a public key line like 'ssh-ed25519 AAAA...'")
                item, here = nodes["host"], f"{here}.host"
            spec = self.string(item, here)
            host = parse_host(spec, host_key) if spec else None
            if spec and host is None:
                self.problem(item, here, f"{spec!r} is not user@host[:port] or local")
            elif host:
                hosts.append(host)
        return tuple(hosts)
