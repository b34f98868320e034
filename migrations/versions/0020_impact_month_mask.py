"""impact speed: impact_member_year.month_mask (the months of the year each member was active in), filled by
regrouping the existing member-month rows

Revision ID: 0020_impact_month_mask
Revises: 0019_impact_member_year
"""
from alembic import op
import sqlalchemy as sa

revision = "0020_impact_month_mask"
down_revision = "0019_impact_member_year"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("impact_member_year") as batch:
        batch.add_column(sa.Column("month_mask", sa.Integer(), nullable=False, server_default="0"))
    # The year rows again from the member-month rows, now with the mask (bit i: active in the year's month i):
    # the rows the roll-up hook writes at this revision (timebank/impact/queries.member_year_sql; written out here
    # so that later changes to the app's SQL do not change this migration). One grouping pass, not an UPDATE per
    # row. On SQLite BIT_OR is the aggregate timebank.impact.queries registers on every connection.
    dialect = op.get_bind().dialect.name
    op.execute("DELETE FROM impact_member_year")
    for start_month in (1, 4):
        if dialect == "sqlite":
            starts_on = (f"date(printf('%04d-%02d-01', CAST(strftime('%Y', mm.month) AS INTEGER) - "
                         f"(CAST(strftime('%m', mm.month) AS INTEGER) < {start_month}), {start_month}))")
            month = "CAST(strftime('%m', mm.month) AS INTEGER)"
        else:
            starts_on = (f"make_date(CAST(EXTRACT(YEAR FROM mm.month) AS INTEGER) - "
                         f"CASE WHEN EXTRACT(MONTH FROM mm.month) < {start_month} THEN 1 ELSE 0 END, {start_month}, 1)")
            month = "CAST(EXTRACT(MONTH FROM mm.month) AS INTEGER)"
        op.execute(f"""
            INSERT INTO impact_member_year (timebank_id, starts_on, membership_id, active, gave, received,
                                            given_minutes, first_on, tag_mask, category_mask, month_mask)
            SELECT mm.timebank_id, {starts_on}, mm.membership_id, MAX(mm.active), MAX(mm.gave), MAX(mm.received),
                   SUM(mm.given_minutes), MIN(mm.first_on), COALESCE(BIT_OR(mm.tag_mask), 0),
                   COALESCE(BIT_OR(mm.category_mask), 0),
                   COALESCE(BIT_OR(CASE WHEN mm.active = 1 THEN 1 << (({month} + {12 - start_month}) % 12) END), 0)
            FROM impact_member_month mm
            GROUP BY mm.timebank_id, {starts_on}, mm.membership_id""")


def downgrade():
    with op.batch_alter_table("impact_member_year") as batch:
        batch.drop_column("month_mask")
