"""deploy bookkeeping: releases (good or bad), what each host runs, step timings

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-28 23:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project", sa.String(length=200), nullable=False),
        sa.Column("environment", sa.String(length=200), nullable=False),
        sa.Column("release_id", sa.String(length=100), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("build_id", sa.Integer(), nullable=False),
        sa.Column("sha", sa.String(length=64), nullable=False),
        sa.Column("ref", sa.String(length=400), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("live_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("bad", sa.Boolean(), nullable=False),
        sa.Column("bad_reason", sa.Text(), nullable=True),
        sa.Column("marked_bad_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["build_id"], ["builds.id"]),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project", "environment", "release_id"),
    )
    op.create_table(
        "host_releases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project", sa.String(length=200), nullable=False),
        sa.Column("environment", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=300), nullable=False),
        sa.Column("live_release", sa.String(length=100), nullable=True),
        sa.Column("last_good_release", sa.String(length=100), nullable=True),
        sa.Column("deployment_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project", "environment", "host"),
    )
    with op.batch_alter_table("deployment_hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("timings", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployment_hosts", schema=None) as batch_op:
        batch_op.drop_column("timings")
    op.drop_table("host_releases")
    op.drop_table("releases")
