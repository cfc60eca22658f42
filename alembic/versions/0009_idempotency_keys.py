"""idempotency keys: stored answers of requests sent with an Idempotency-Key; audit columns

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 20:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import persistence.types

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no server default: rows sealed before keep their digests (persistence.sealing).
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('replay_of', sa.Uuid(), nullable=True))
    op.create_table(
        'idempotency_key',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('subject', sa.String(length=255), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('request_sha256', sa.String(length=64), nullable=False),
        sa.Column('request_id', sa.Uuid(), nullable=False),
        sa.Column('created_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('operation_type', sa.String(length=16), nullable=True),
        sa.Column('operation_name', sa.String(length=255), nullable=True),
        sa.Column('status', sa.Integer(), nullable=False),
        sa.Column('content_type', sa.String(length=255), nullable=False),
        sa.Column('body', sa.LargeBinary(), nullable=False),
        sa.Column('error_codes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_key')),
        sa.UniqueConstraint('subject', 'key', name=op.f('uq_idempotency_key_subject_key')),
    )
    op.create_index(op.f('ix_idempotency_key_expires_at'), 'idempotency_key', ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_idempotency_key_expires_at'), table_name='idempotency_key')
    op.drop_table('idempotency_key')
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_column('replay_of')
        batch_op.drop_column('idempotency_key')
