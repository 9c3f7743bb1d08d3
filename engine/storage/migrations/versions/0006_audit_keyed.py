"""a keyed, anchored audit chain, and where each event came from

audit_event.source: where the action came from ("web 10.0.0.1", "api 10.0.0.1", "cli alice", "ticker").
audit_head.keyed_from: the first event signed with the audit key; events before it were written
unkeyed (SHA-256 links) and are reported as such. key_id names the key; archived_to/archived_hash
are the anchor the chain continues from once old events are archived; mac signs the whole head.

Every database gets a head here (a deleted head is then never mistaken for a new database), and
the engine signs it in this same transaction (ProcessEngine.migrate passes `audit_anchor`), making
the key file var/audit.key (0600) when OPSFLOW_AUDIT_KEY is not set.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 10:00:00
"""

from alembic import context, op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def upgrade() -> None:
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=128), nullable=True))
    with op.batch_alter_table('audit_head', schema=None) as batch_op:
        batch_op.add_column(sa.Column('keyed_from', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('key_id', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('archived_to', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('archived_hash', sa.String(length=64), nullable=False,
                                      server_default=GENESIS))
        batch_op.add_column(sa.Column('mac', sa.String(length=64), nullable=True))

    bind = op.get_bind()
    if bind.execute(sa.text("SELECT id FROM audit_head WHERE id = 1")).first() is None:
        last = bind.execute(sa.text("SELECT id, hash FROM audit_event ORDER BY id DESC LIMIT 1")).first()
        bind.execute(sa.text("INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, :id, :hash)"),
                     {"id": last[0] if last else 0, "hash": last[1] if last else GENESIS})
    bind.execute(sa.text("UPDATE audit_head SET keyed_from = last_id + 1 WHERE id = 1"))
    anchor = context.config.attributes.get("audit_anchor")
    if anchor is None:
        raise RuntimeError("revision 0006 signs the audit chain with the audit key: run it with 'opsflow init'")
    anchor(bind)


def downgrade() -> None:
    with op.batch_alter_table('audit_head', schema=None) as batch_op:
        batch_op.drop_column('mac')
        batch_op.drop_column('archived_hash')
        batch_op.drop_column('archived_to')
        batch_op.drop_column('key_id')
        batch_op.drop_column('keyed_from')
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_column('source')
