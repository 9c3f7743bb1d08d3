"""cases name configuration items

config_item.category: the business category incident grading reads (集中交易, 网上交易, ... 其他), from
the register, never from what a reporter types. case_item: which items a case names, both ways.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 20:40:00
"""

from alembic import op
import sqlalchemy as sa
import engine.storage.models as engine_models


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('config_item', schema=None) as batch_op:
        batch_op.add_column(sa.Column('category', sa.String(length=32), server_default='其他', nullable=False))
    op.create_table('case_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('linked_at', engine_models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('linked_by', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instance.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['item_id'], ['config_item.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('instance_id', 'item_id')
    )
    with op.batch_alter_table('case_item', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_item_instance_id'), ['instance_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_case_item_item_id'), ['item_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('case_item', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_item_item_id'))
        batch_op.drop_index(batch_op.f('ix_case_item_instance_id'))
    op.drop_table('case_item')
    with op.batch_alter_table('config_item', schema=None) as batch_op:
        batch_op.drop_column('category')
