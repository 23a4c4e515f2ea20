"""policy rules that expire; the change log kept whole with who made each change

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("policy_rules") as table:
        table.add_column(sa.Column("expires_at", sa.DateTime(timezone=True)))
        table.create_index("ix_policy_rules_expires_at", ["expires_at"])
    with op.batch_alter_table("policy_changes") as table:
        table.add_column(sa.Column("expires_at", sa.DateTime(timezone=True)))
        table.add_column(sa.Column("actor", sa.String(200)))


def downgrade() -> None:
    with op.batch_alter_table("policy_changes") as table:
        table.drop_column("actor")
        table.drop_column("expires_at")
    with op.batch_alter_table("policy_rules") as table:
        table.drop_index("ix_policy_rules_expires_at")
        table.drop_column("expires_at")
