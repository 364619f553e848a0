"""A worker that built nothing makes its own git mirror for what it reads there (commit
order for forward-only deployments, chat's commits): real git, real database."""

from __future__ import annotations

from collections.abc import Callable

from app.context import Context
from app.pipeline.builds import find_or_create_build
from tests.support.gitrepo import GitRepo
from workers import changes, chat, mirrors

PIPELINE = """\
projects:
  shop:
    provider: github
    repo: acme/shop
    webhook_secret: ${{WEBHOOK_SECRET}}
{clone_url}    build: {{commands: ["true"], artifact: dist}}
    environments:
      staging: {{branches: [main], hosts: [local], path: /srv/shop}}
"""


def test_a_machine_without_a_mirror_fetches_the_commits_it_reads(
        worker_context: Callable[..., Context], database_url: str, git_repo: GitRepo) -> None:
    ctx = worker_context(PIPELINE.format(clone_url=f"    clone_url: {git_repo.url}\n"),
                         database_url)
    older = git_repo.commit({"app.txt": "v1"}, message="Ship v1")
    newer = git_repo.commit({"app.txt": "v2"}, message="Ship v2")
    mirror = ctx.settings.data_dir / "mirrors" / "shop.git"
    assert not mirror.exists()

    found = mirrors.holding(ctx, "shop", [older, newer])
    assert found == mirror
    assert mirrors.has_commit(mirror, older) and mirrors.has_commit(mirror, newer)
    assert changes.ancestry(mirror, [older, newer]) == {(older, newer)}
    head = chat.commit(mirror, newer)
    assert head is not None and head.subject == "Ship v2"
    assert [c.sha for c in chat.added_commits(mirror, older, newer)[0]] == [newer]

    # Held already: nothing is fetched (the origin may be gone meanwhile).
    git_repo.origin.rename(git_repo.origin.with_name("moved"))
    assert mirrors.holding(ctx, "shop", [older, newer]) == mirror
    # Unreachable: the mirror knows what it knows, and nothing raises.
    assert mirrors.holding(ctx, "shop", ["f" * 40]) == mirror
    assert not mirrors.has_commit(mirror, "f" * 40)


def test_a_pushed_path_is_never_read_without_clone_url_in_the_file(
        worker_context: Callable[..., Context], database_url: str, git_repo: GitRepo) -> None:
    ctx = worker_context(PIPELINE.format(clone_url=""), database_url)
    sha = git_repo.commit({"app.txt": "v1"})
    find_or_create_build(ctx, ctx.config.projects["shop"], sha=sha, ref="refs/heads/main",
                         repository="acme/shop", clone_url=str(git_repo.origin))
    mirror = mirrors.holding(ctx, "shop", [sha])
    assert not mirrors.has_commit(mirror, sha)
    assert not (mirror / "HEAD").exists()
