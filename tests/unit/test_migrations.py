"""The migration scripts form one line of history: a single head for every database."""

from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory

from app.db import MIGRATIONS


def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config)


def test_the_script_directory_has_exactly_one_head() -> None:
    heads = _scripts().get_heads()
    assert len(heads) == 1, f"several heads {heads}: add a merge revision"


def test_the_merge_revision_ties_every_branch_of_0001() -> None:
    merge = _scripts().get_revision("0005")
    assert set(merge.down_revision) == {"0002", "0003", "0004"}
