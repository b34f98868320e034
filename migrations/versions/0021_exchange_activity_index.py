"""exchanges: an index on exchange.activity_id (a group activity's exchanges were found by reading every exchange)

Revision ID: 0021_exchange_activity_index
Revises: 0020_impact_month_mask
"""
from alembic import op

revision = "0021_exchange_activity_index"
down_revision = "0020_impact_month_mask"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_exchange_activity", "exchange", ["activity_id"])


def downgrade():
    op.drop_index("ix_exchange_activity", table_name="exchange")
