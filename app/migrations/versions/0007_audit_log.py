"""the audit log (who approved, canceled, retried, rolled back or deployed by hand), and each
build's commit time (for DORA's lead time)

Revision ID: 0007_audit_log
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_audit_log"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("project", sa.String(length=200), nullable=False),
        sa.Column("environment", sa.String(length=200), nullable=False),
        sa.Column("deployment_id", sa.Integer(), sa.ForeignKey("deployments.id"),
                  nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index("ix_audit_log_project_id", "audit_log", ["project", "id"])
    op.create_index("ix_audit_log_deployment_id", "audit_log", ["deployment_id"])
    with op.batch_alter_table("builds") as batch:
        batch.add_column(sa.Column("committed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("committed_at")
    op.drop_index("ix_audit_log_deployment_id", "audit_log")
    op.drop_index("ix_audit_log_project_id", "audit_log")
    op.drop_table("audit_log")
