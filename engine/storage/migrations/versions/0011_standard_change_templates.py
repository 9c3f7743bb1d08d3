"""standard-change templates

standard_change_template: the catalogue of standard changes (标准变更模板), each bound to register
items (system_ids), with its steps, rollback plan, validity and the two approvers (ops manager, IT
head) of the case that activated it. status 草稿|生效|过期|停用. History in the audit trail
(template.activated, template.expired, template.retired), not in a table of its own.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 21:10:00
"""

from alembic import op
import sqlalchemy as sa
import engine.storage.models as engine_models


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('standard_change_template',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('title', sa.String(length=256), nullable=False),
    sa.Column('system_ids', sa.JSON(), nullable=False),
    sa.Column('steps', sa.JSON(), nullable=False),
    sa.Column('rollback_plan', sa.Text(), nullable=False),
    sa.Column('rollback_tested', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('valid_from', engine_models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('valid_until', engine_models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('approved_by_ops', sa.String(length=64), nullable=True),
    sa.Column('approved_by_it_head', sa.String(length=64), nullable=True),
    sa.Column('instance_id', sa.Integer(), nullable=True),
    sa.Column('created_at', engine_models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('updated_at', engine_models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instance.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
    )
    with op.batch_alter_table('standard_change_template', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_standard_change_template_instance_id'), ['instance_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_standard_change_template_status'), ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('standard_change_template', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_standard_change_template_status'))
        batch_op.drop_index(batch_op.f('ix_standard_change_template_instance_id'))
    op.drop_table('standard_change_template')
