"""prediction.observed_at, and the indexes of history queries

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 17:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import persistence.types

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Predictions stored before the column existed were observed when they were made.
    with op.batch_alter_table('prediction', schema=None) as batch_op:
        batch_op.add_column(sa.Column('observed_at', persistence.types.UTCDateTime(timezone=True), nullable=True))
    op.execute("UPDATE prediction SET observed_at = created_at")
    with op.batch_alter_table('prediction', schema=None) as batch_op:
        batch_op.alter_column('observed_at', existing_type=persistence.types.UTCDateTime(timezone=True), nullable=False)
        batch_op.drop_index('ix_prediction_device_id')
        batch_op.create_index('ix_prediction_device_id_observed_at', ['device_id', 'observed_at'], unique=False)
        batch_op.create_index('ix_prediction_observed_at_id', ['observed_at', 'id'], unique=False)
        batch_op.create_index('ix_prediction_created_at_id', ['created_at', 'id'], unique=False)
        # Only the high-risk rows (persistence.tables.HIGH_RISK): cheap to keep up to date.
        batch_op.create_index('ix_prediction_high_risk', ['failure_probability', 'id'], unique=False, sqlite_where=sa.text('failure_probability >= 0.5'), postgresql_where=sa.text('failure_probability >= 0.5'))


def downgrade() -> None:
    with op.batch_alter_table('prediction', schema=None) as batch_op:
        batch_op.drop_index('ix_prediction_high_risk')
        batch_op.drop_index('ix_prediction_created_at_id')
        batch_op.drop_index('ix_prediction_observed_at_id')
        batch_op.drop_index('ix_prediction_device_id_observed_at')
        batch_op.create_index('ix_prediction_device_id', ['device_id'], unique=False)
        batch_op.drop_column('observed_at')
