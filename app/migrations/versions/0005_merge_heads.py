"""merge: intake (0002), build attempts (0003) and deploy bookkeeping (0004) landed side by side

Revision ID: 0005
Revises: 0002, 0003, 0004
"""

revision = "0005"
down_revision = ("0002", "0003", "0004")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # the branches touch different tables: tying them together changes no schema


def downgrade() -> None:
    pass
