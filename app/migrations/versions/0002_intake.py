"""intake: every delivery recorded (refused ones too), done once per id; builds' paths question

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# 0001 left the (provider, delivery_id) constraint unnamed; this names it as each database did.
_UNIQUE = {"postgresql": "deliveries_provider_delivery_id_key", "sqlite": "uq_deliveries_provider"}
_SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table("deliveries", naming_convention=_SQLITE_NAMES) as batch:
        batch.add_column(sa.Column("done", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.drop_constraint(_UNIQUE[dialect], type_="unique")
    # Until now only deliveries that were done were recorded.
    op.execute(sa.text("UPDATE deliveries SET done = :yes").bindparams(yes=True))
    op.create_index("uq_deliveries_done", "deliveries", ["provider", "delivery_id"],
                    unique=True, sqlite_where=sa.text("done"), postgresql_where=sa.text("done"))
    op.create_index("ix_deliveries_project_id", "deliveries", ["project", "id"])
    op.create_index("ix_deliveries_sha", "deliveries", ["sha"])
    with op.batch_alter_table("builds") as batch:
        batch.add_column(sa.Column("changes_since", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("changes_base", sa.String(length=400), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("changes_base")
        batch.drop_column("changes_since")
    op.drop_index("ix_deliveries_sha", table_name="deliveries")
    op.drop_index("ix_deliveries_project_id", table_name="deliveries")
    op.drop_index("uq_deliveries_done", table_name="deliveries")
    op.execute(sa.text("DELETE FROM deliveries WHERE NOT done"))
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("done")
        batch.create_unique_constraint("deliveries_provider_delivery_id_key",
                                       ["provider", "delivery_id"])
