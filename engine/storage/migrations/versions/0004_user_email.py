"""user email and the timer claim index

app_user.email: where escalation e-mails go (engine/people/notify.py).
ix_process_instance_timer (status, next_timer_due): the tick's claim of due case timers reads only
this index, so it costs the same with 10 or 10,000 timers waiting (bench/timer_bench.py).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 02:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email', sa.String(length=256), nullable=True))
    with op.batch_alter_table('process_instance', schema=None) as batch_op:
        batch_op.create_index('ix_process_instance_timer', ['status', 'next_timer_due'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('process_instance', schema=None) as batch_op:
        batch_op.drop_index('ix_process_instance_timer')
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.drop_column('email')
