"""matching: a sent plan's skipped proposals keep ids and the reason only; the member names and request titles
stored by earlier versions are removed (names are looked up when shown, so an erased member's name is not kept)

Revision ID: 0022_plan_skipped_without_names
Revises: 0021_exchange_activity_index
"""
import json

from alembic import op
import sqlalchemy as sa

revision = "0022_plan_skipped_without_names"
down_revision = "0021_exchange_activity_index"
branch_labels = None
depends_on = None

KEPT = ("request_id", "member_id", "reason")


def upgrade():
    bind = op.get_bind()
    plans = sa.table("match_plan", sa.column("id", sa.Integer), sa.column("skipped", sa.JSON))
    rows = bind.execute(sa.select(plans.c.id, plans.c.skipped).where(plans.c.skipped.is_not(None))).all()
    for plan_id, skipped in rows:
        entries = json.loads(skipped) if isinstance(skipped, str) else skipped
        if not isinstance(entries, list):
            continue
        kept = [{k: e[k] for k in KEPT if k in e} for e in entries if isinstance(e, dict)]
        if kept != entries:
            bind.execute(plans.update().where(plans.c.id == plan_id).values(skipped=kept))


def downgrade():
    pass  # the names are gone; the app looks them up when it shows a plan
