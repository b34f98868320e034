"""matching: a sent plan records the proposals it skipped (and why) because they were no longer valid

Revision ID: 0014_matching_funnel
Revises: 0012_impact_rollups
Create Date: 2026-11-23 17:20:00

"""
from alembic import op
import sqlalchemy as sa


revision = "0014_matching_funnel"
down_revision = "0012_impact_rollups"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("match_plan", schema=None) as batch_op:
        batch_op.add_column(sa.Column("skipped", sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table("match_plan", schema=None) as batch_op:
        batch_op.drop_column("skipped")
