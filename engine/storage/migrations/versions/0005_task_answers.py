"""each task's own answers, returns, and how a version stores answers

human_task.answers: what the person submitted on that task (the approval record, 审批记录).
human_task.completed_revision: the case revision a task was completed at (the record's order when
several steps complete within one clock tick).
human_task.return_reason / returned_by: the task reopened because the case was sent back (退回).
process_definition.answers: "by_task" (each task's answers under its id, case fields only where the
BPMN declares them) for versions deployed from now on; "shared" for the versions deployed before,
so cases still running on them keep the shared-key behaviour their gateways read.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 10:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('answers', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('return_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('returned_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('completed_revision', sa.Integer(), nullable=True))
    with op.batch_alter_table('process_definition', schema=None) as batch_op:
        batch_op.add_column(sa.Column('answers', sa.String(length=16), nullable=False, server_default='shared'))


def downgrade() -> None:
    with op.batch_alter_table('process_definition', schema=None) as batch_op:
        batch_op.drop_column('answers')
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.drop_column('completed_revision')
        batch_op.drop_column('returned_by')
        batch_op.drop_column('return_reason')
        batch_op.drop_column('answers')
