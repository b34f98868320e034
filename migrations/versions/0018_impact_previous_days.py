"""impact speed: each fact row carries the day of its member's previous active row with the same partner and with
the same organisation (impact_fact.pair_prev_on, org_prev_on), filled from the existing rows

Distinct partners per member and people per organisation then count rows whose previous day falls before the
period, instead of de-duplicating a year of rows. Plain ADD COLUMN (nullable) works in place on both databases;
the fill is the same statement the roll-up maintenance uses (timebank/impact/rollups.py).

Revision ID: 0018_impact_previous_days
Revises: 0017_posting_minutes_index
Create Date: 2026-11-23 23:40:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0018_impact_previous_days'
down_revision = '0017_posting_minutes_index'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('impact_fact', sa.Column('pair_prev_on', sa.Date(), nullable=True))
    op.add_column('impact_fact', sa.Column('org_prev_on', sa.Date(), nullable=True))
    # The fill as of this revision (rollups.set_previous_days keeps the rows right afterwards).
    for column, other in (("pair_prev_on", "partner_key"), ("org_prev_on", "organisation_id")):
        op.execute(f"""
            UPDATE impact_fact SET {column} = x.prev
            FROM (SELECT timebank_id AS t, on_date AS d, exchange_id AS e, sign AS s, side AS sd,
                         LAG(on_date) OVER (PARTITION BY timebank_id, membership_id, {other}
                                            ORDER BY on_date, exchange_id, side) AS prev
                  FROM impact_fact WHERE active = 1 AND membership_id IS NOT NULL AND {other} IS NOT NULL) x
            WHERE impact_fact.timebank_id = x.t AND impact_fact.on_date = x.d AND impact_fact.exchange_id = x.e
              AND impact_fact.sign = x.s AND impact_fact.side = x.sd""")


def downgrade():
    with op.batch_alter_table('impact_fact', schema=None) as batch_op:
        batch_op.drop_column('org_prev_on')
        batch_op.drop_column('pair_prev_on')
