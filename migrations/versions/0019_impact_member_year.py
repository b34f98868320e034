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
    # Existing member-months: the same rows the roll-up hook wrote at this revision (see
    # timebank/impact/rollups.py; written out here so that later changes to the app's SQL do not change this
    # migration). On SQLite BIT_OR is the aggregate timebank.impact.queries registers on every connection.
    dialect = op.get_bind().dialect.name
    for start_month in (1, 4):
        if dialect == "sqlite":
            starts_on = (f"date(printf('%04d-%02d-01', CAST(strftime('%Y', mm.month) AS INTEGER) - "
                         f"(CAST(strftime('%m', mm.month) AS INTEGER) < {start_month}), {start_month}))")
        else:
            starts_on = (f"make_date(CAST(EXTRACT(YEAR FROM mm.month) AS INTEGER) - "
                         f"CASE WHEN EXTRACT(MONTH FROM mm.month) < {start_month} THEN 1 ELSE 0 END, {start_month}, 1)")
        op.execute(f"""
            INSERT INTO impact_member_year (timebank_id, starts_on, membership_id, active, gave, received,
                                            given_minutes, first_on, tag_mask, category_mask)
            SELECT mm.timebank_id, {starts_on}, mm.membership_id, MAX(mm.active), MAX(mm.gave), MAX(mm.received),
                   SUM(mm.given_minutes), MIN(mm.first_on), COALESCE(BIT_OR(mm.tag_mask), 0),
                   COALESCE(BIT_OR(mm.category_mask), 0)
            FROM impact_member_month mm
            GROUP BY mm.timebank_id, {starts_on}, mm.membership_id""")

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
