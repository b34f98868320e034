"""notifications: a transactional outbox for emails (email_outbox)

Revision ID: 0016_outbox
Revises: 0015_impact_speed
Create Date: 2026-11-23 17:05:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0016_outbox'
down_revision = '0015_impact_speed'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('email_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.String(length=200), nullable=True),
    sa.CheckConstraint("status IN ('pending','sent','failed','skipped')", name=op.f('ck_email_outbox_status_known')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_email_outbox_attempts_not_negative')),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_email_outbox_user_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_email_outbox'))
    )
    with op.batch_alter_table('email_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_email_outbox_status_due', ['status', 'next_attempt_at'], unique=False)


def downgrade():
    with op.batch_alter_table('email_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_email_outbox_status_due')
    op.drop_table('email_outbox')
