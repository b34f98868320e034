"""impact roll-ups: impact_fact (one row per side of each signed exchange event), filled from raw rows

Revision ID: 0012_impact_rollups
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = "0012_impact_rollups"
down_revision = "0011_matching_more"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "impact_fact",
        sa.Column("timebank_id", sa.Integer(), nullable=False),
        sa.Column("on_date", sa.Date(), nullable=False),
        sa.Column("exchange_id", sa.Integer(), nullable=False),
        sa.Column("sign", sa.SmallInteger(), nullable=False),
        sa.Column("active", sa.SmallInteger(), nullable=False),
        sa.Column("side", sa.String(length=9), nullable=False),
        sa.Column("membership_id", sa.Integer(), nullable=True),
        sa.Column("partner_key", sa.Integer(), nullable=True),
        sa.Column("organisation_id", sa.Integer(), nullable=True),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=5), nullable=False),
        sa.Column("coproduction_type", sa.String(length=30), nullable=False),
        sa.Column("outcome_area", sa.String(length=50), nullable=False),
        sa.Column("collective", sa.Boolean(), nullable=False),
        sa.Column("substitutive", sa.Boolean(), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["exchange_id"], ["exchange.id"], name=op.f("fk_impact_fact_exchange_id_exchange")),
        sa.ForeignKeyConstraint(["timebank_id"], ["timebank.id"], name=op.f("fk_impact_fact_timebank_id_timebank")),
        sa.PrimaryKeyConstraint("timebank_id", "on_date", "exchange_id", "sign", "side", name=op.f("pk_impact_fact")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("impact_fact", schema=None) as batch_op:
        batch_op.create_index("ix_impact_fact_exchange", ["exchange_id"], unique=False)
        batch_op.create_index("ix_impact_fact_member", ["membership_id", "on_date"], unique=False)
    op.create_table(
        "impact_daily",
        sa.Column("timebank_id", sa.Integer(), nullable=False),
        sa.Column("on_date", sa.Date(), nullable=False),
        sa.Column("dimension", sa.String(length=20), nullable=False),
        sa.Column("value", sa.String(length=60), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("exchanges", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["timebank_id"], ["timebank.id"], name=op.f("fk_impact_daily_timebank_id_timebank")),
        sa.PrimaryKeyConstraint("timebank_id", "on_date", "dimension", "value", name=op.f("pk_impact_daily")),
    )
    # A plain CREATE INDEX (never a batch copy): the ledger's triggers live on this table.
    op.create_index("ix_transfer_timebank_kind_date", "transfer", ["timebank_id", "kind", "effective_date"],
                    unique=False)
    # Existing exchanges: the same rows the service hook writes (see timebank/impact/rollups.py).
    from timebank.impact.queries import DAILY_COLUMNS, FACT_COLUMNS, RAW_EVENTS_SQL, daily_from_facts_sql, raw_facts_sql

    events = RAW_EVENTS_SQL.format(where_t="1 = 1", where_r="1 = 1")
    op.execute(f"INSERT INTO impact_fact ({', '.join(FACT_COLUMNS)}) WITH ev AS ({events}) {raw_facts_sql('ev')}")
    op.execute(f"INSERT INTO impact_daily ({', '.join(DAILY_COLUMNS)}) {daily_from_facts_sql('impact_fact')}")


def downgrade():
    op.drop_index("ix_transfer_timebank_kind_date", table_name="transfer")
    op.drop_table("impact_daily")
    with op.batch_alter_table("impact_fact", schema=None) as batch_op:
        batch_op.drop_index("ix_impact_fact_member")
        batch_op.drop_index("ix_impact_fact_exchange")
    op.drop_table("impact_fact")
