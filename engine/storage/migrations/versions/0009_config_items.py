"""configuration items

config_item: the register of systems (配置项) cases will name: class (核心交易/非核心 and the 2021
一类–五类 class), markets, environment, owner role, A/B maintainers, vendor, version, status.
config_item_relation: depends_on / runs_on between items. Every change to an item is recorded in
the audit trail (ci.created, ci.updated), not in a table of its own (engine/configuration/).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 19:00:00
"""

from alembic import op
import sqlalchemy as sa
import engine.storage.models as engine_models


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('config_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('core', sa.Boolean(), nullable=False),
    sa.Column('system_class', sa.Integer(), nullable=True),
    sa.Column('markets', sa.JSON(), nullable=False),
    sa.Column('environment', sa.String(length=32), nullable=False),
    sa.Column('owner_role', sa.String(length=64), nullable=False),
    sa.Column('maintainer_a', sa.String(length=64), nullable=False),
    sa.Column('maintainer_b', sa.String(length=64), nullable=False),
    sa.Column('vendor', sa.String(length=128), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', engine_models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('updated_at', engine_models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('config_item_relation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('from_id', sa.Integer(), nullable=False),
    sa.Column('to_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['from_id'], ['config_item.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['to_id'], ['config_item.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('from_id', 'to_id', 'kind')
    )
    with op.batch_alter_table('config_item_relation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_config_item_relation_from_id'), ['from_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_config_item_relation_to_id'), ['to_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('config_item_relation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_config_item_relation_to_id'))
        batch_op.drop_index(batch_op.f('ix_config_item_relation_from_id'))
    op.drop_table('config_item_relation')
    op.drop_table('config_item')
