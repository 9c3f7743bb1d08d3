"""login attempts and web sessions

login_attempt: every password check (page, API, password change) with the user name as typed, the
client's address, when, and whether it matched: the login throttle counts failures here, so every
worker and process sees the same count (engine/people/identity.py).
web_session: one row per signed-in browser; the session cookie carries a random id stored here only
as SHA-256. Signing out revokes it; a password change or deactivation revokes all of the user's.

Browsers signed in before this revision carry no session id and are asked to sign in again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 10:00:00
"""

from alembic import op
import sqlalchemy as sa
import engine.storage.models as engine_models


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('login_attempt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('at', engine_models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('login_attempt', schema=None) as batch_op:
        batch_op.create_index('ix_login_attempt_username', ['username', 'at'], unique=False)
        batch_op.create_index('ix_login_attempt_address', ['address', 'at'], unique=False)
        batch_op.create_index('ix_login_attempt_at', ['at'], unique=False)

    op.create_table('web_session',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('session_hash', sa.String(length=64), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('created_at', engine_models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', engine_models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', engine_models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('session_hash')
    )
    with op.batch_alter_table('web_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_web_session_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('web_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_web_session_user_id'))
    op.drop_table('web_session')
    with op.batch_alter_table('login_attempt', schema=None) as batch_op:
        batch_op.drop_index('ix_login_attempt_at')
        batch_op.drop_index('ix_login_attempt_address')
        batch_op.drop_index('ix_login_attempt_username')
    op.drop_table('login_attempt')
