"""the pipeline: what made a deployment (kind, source), who asked and approved, rollbacks' and
retries' targets

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

def _columns() -> tuple[sa.Column, ...]:
    return (
        sa.Column("kind", sa.String(length=20), nullable=False, server_default="deploy"),
        sa.Column("source_id", sa.Integer(), nullable=True),
        sa.Column("target_release", sa.String(length=100), nullable=True),
        sa.Column("replaces_release", sa.String(length=100), nullable=True),
        sa.Column("hosts_only", sa.JSON(), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=True),
        sa.Column("approved_by", sa.String(length=200), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
    )


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        for column in _columns():
            batch.add_column(column)
    op.create_index("ix_deployments_environment_state", "deployments",
                    ["project", "environment", "state"])


def downgrade() -> None:
    op.drop_index("ix_deployments_environment_state", "deployments")
    with op.batch_alter_table("deployments") as batch:
        for column in reversed(_columns()):
            batch.drop_column(column.name)
