"""register documents

register_document: forms, the trading calendar's sessions and holidays, and registers such as the
emergency plans, versioned in the database so every node reads the same (engine/definitions/documents.py).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 21:10:00
"""

from alembic import op
import sqlalchemy as sa
import engine.storage.models as engine_models


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('register_document',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', engine_models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('seeded_from', sa.String(length=256), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kind', 'key', 'version')
    )


def downgrade() -> None:
    op.drop_table('register_document')
