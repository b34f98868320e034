"""people: categories can be retired; a session version per user (logout ends copied cookies)

Revision ID: 0008_people_more
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = "0008_people_more"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("category", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retired_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_version", sa.Integer(), server_default="0", nullable=False))


def downgrade():
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_column("session_version")
    with op.batch_alter_table("category", schema=None) as batch_op:
        batch_op.drop_column("retired_at")
