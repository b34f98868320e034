"""matching: a broker's block (safeguarding) is marked so members cannot lift it

Revision ID: 0011_matching_more
Revises: 0006
Create Date: 2026-11-23 13:20:00

"""
from alembic import op
import sqlalchemy as sa


revision = "0011_matching_more"
down_revision = "0008_people_more"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("blocked_pair", schema=None) as batch_op:
        batch_op.add_column(sa.Column("by_broker", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade():
    with op.batch_alter_table("blocked_pair", schema=None) as batch_op:
        batch_op.drop_column("by_broker")
