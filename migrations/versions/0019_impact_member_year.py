"""impact speed: impact_member_year (impact_member_month grouped per calendar year and per April-March year) and
impact_member_first (each member's first delivered exchange), filled from the existing roll-up

Revision ID: 0019_impact_member_year
Revises: 0018_impact_previous_days
"""
from alembic import op
import sqlalchemy as sa

revision = "0019_impact_member_year"
down_revision = "0018_impact_previous_days"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "impact_member_year",
        sa.Column("timebank_id", sa.Integer(), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("membership_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("active", sa.SmallInteger(), nullable=False),
        sa.Column("gave", sa.SmallInteger(), nullable=False),
        sa.Column("received", sa.SmallInteger(), nullable=False),
        sa.Column("given_minutes", sa.Integer(), nullable=False),
        sa.Column("first_on", sa.Date(), nullable=True),
        sa.Column("tag_mask", sa.BigInteger(), nullable=False),
        sa.Column("category_mask", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["timebank_id"], ["timebank.id"],
                                name=op.f("fk_impact_member_year_timebank_id_timebank")),
        sa.PrimaryKeyConstraint("timebank_id", "starts_on", "membership_id", name=op.f("pk_impact_member_year")),
        sqlite_with_rowid=False,
    )
    # Existing member-months: the same rows the roll-up hook writes (see timebank/impact/rollups.py). On SQLite
    # BIT_OR is the aggregate timebank.impact.models registers on every connection.
    from timebank.impact.queries import MEMBER_YEAR_COLUMNS, YEAR_STARTS, member_year_sql

    for start_month in YEAR_STARTS:
        op.execute(f"INSERT INTO impact_member_year ({', '.join(MEMBER_YEAR_COLUMNS)}) "
                   f"{member_year_sql(op.get_bind().dialect.name, start_month)}")

    op.create_table(
        "impact_member_first",
        sa.Column("timebank_id", sa.Integer(), nullable=False),
        sa.Column("membership_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("first_on", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(["timebank_id"], ["timebank.id"],
                                name=op.f("fk_impact_member_first_timebank_id_timebank")),
        sa.PrimaryKeyConstraint("timebank_id", "membership_id", name=op.f("pk_impact_member_first")),
    )
    from timebank.impact.queries import member_first_sql

    op.execute(f"INSERT INTO impact_member_first (timebank_id, membership_id, first_on) {member_first_sql()}")


def downgrade():
    op.drop_table("impact_member_first")
    op.drop_table("impact_member_year")
