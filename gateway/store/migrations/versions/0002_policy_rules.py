"""policy rules and gateway metadata

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ptype", sa.String(1), nullable=False),
        sa.Column("v0", sa.String(255), nullable=False),
        sa.Column("v1", sa.String(512), nullable=False),
        sa.Column("v2", sa.String(255), nullable=False, server_default=""),
        sa.Column("v3", sa.String(16), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200)),
        sa.UniqueConstraint("ptype", "v0", "v1", "v2", "v3", name="uq_policy_rule"),
    )
    op.create_index("ix_policy_rules_v1", "policy_rules", ["v1"])
    op.create_table(
        "gateway_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gateway_meta")
    op.drop_table("policy_rules")
