"""case figures for the dashboard's KPIs

process_instance.detected_at / restored_at / outcome / category: figures each save keeps from the
case data, as processes/kpis.json names them (an incident's discovery and restore times, a change's
outcome and type), so the dashboard adds them up in SQL instead of reading workflows
(engine/cases/figures.py, engine/cases/reports.py).

Cases saved before this revision carry no figures until their next save.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 18:00:00
"""

from alembic import op
import sqlalchemy as sa
import engine.storage.models as engine_models


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('process_instance', schema=None) as batch_op:
        batch_op.add_column(sa.Column('detected_at', engine_models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('restored_at', engine_models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('outcome', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('category', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('process_instance', schema=None) as batch_op:
        batch_op.drop_column('category')
        batch_op.drop_column('outcome')
        batch_op.drop_column('restored_at')
        batch_op.drop_column('detected_at')
