"""policy change log: the lines each policy version added or removed

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("added", sa.Boolean, nullable=False),
        sa.Column("ptype", sa.String(1), nullable=False),
        sa.Column("v0", sa.String(255), nullable=False),
        sa.Column("v1", sa.String(512), nullable=False),
        sa.Column("v2", sa.String(255), nullable=False, server_default=""),
        sa.Column("v3", sa.String(16), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_policy_changes_version", "policy_changes", ["version"])


def downgrade() -> None:
    op.drop_table("policy_changes")
