"""alerts: monitoring alerts and their occurrences

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 01:00:00
"""

from alembic import op
import sqlalchemy as sa
import engine.storage.models as engine_models


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alert',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('fingerprint', sa.String(length=256), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('system', sa.String(length=128), nullable=False),
    sa.Column('first_seen_at', engine_models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', engine_models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instance.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'fingerprint')
    )
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_instance_id'), ['instance_id'], unique=False)

    op.create_table('alert_occurrence',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('alert_id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('occurred_at', engine_models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('received_at', engine_models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_by', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['alert.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instance.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('alert_occurrence', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_occurrence_alert_id'), ['alert_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alert_occurrence_instance_id'), ['instance_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('alert_occurrence', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_occurrence_instance_id'))
        batch_op.drop_index(batch_op.f('ix_alert_occurrence_alert_id'))

    op.drop_table('alert_occurrence')
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_instance_id'))

    op.drop_table('alert')
