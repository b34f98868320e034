"""impact speed: impact_member_month (the person-level roll-up per time bank, month and member), filled from impact_fact

Revision ID: 0015_impact_speed
Revises: 0014_matching_funnel
"""
from alembic import op
import sqlalchemy as sa

revision = "0015_impact_speed"
down_revision = "0014_matching_funnel"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "impact_member_month",
        sa.Column("timebank_id", sa.Integer(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("membership_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("active", sa.SmallInteger(), nullable=False),
        sa.Column("gave", sa.SmallInteger(), nullable=False),
        sa.Column("received", sa.SmallInteger(), nullable=False),
        sa.Column("given_minutes", sa.Integer(), nullable=False),
        sa.Column("first_on", sa.Date(), nullable=True),
        sa.Column("tag_mask", sa.BigInteger(), nullable=False),
        sa.Column("category_mask", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["timebank_id"], ["timebank.id"],
                                name=op.f("fk_impact_member_month_timebank_id_timebank")),
        sa.PrimaryKeyConstraint("timebank_id", "month", "membership_id", name=op.f("pk_impact_member_month")),
        sqlite_with_rowid=False,
    )
    # Existing facts: the same rows the roll-up hook writes (see timebank/impact/rollups.py).
    from timebank.impact.queries import MEMBER_MONTH_COLUMNS, member_month_sql

    op.execute(f"INSERT INTO impact_member_month ({', '.join(MEMBER_MONTH_COLUMNS)}) "
               f"{member_month_sql(op.get_bind().dialect.name, 'impact_fact')}")


def downgrade():
    op.drop_table("impact_member_month")
