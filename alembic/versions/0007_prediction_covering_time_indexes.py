"""prediction: the time indexes cover the columns statistics per time bucket read

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 18:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Key columns rather than INCLUDE, so that SQLite (which has no INCLUDE) covers them too; the
# leading (time, id) still serves the keyset pages of the history queries.
STATS_COLUMNS = ['model_version_id', 'failure_probability', 'is_failure']


def upgrade() -> None:
    with op.batch_alter_table('prediction', schema=None) as batch_op:
        batch_op.drop_index('ix_prediction_observed_at_id')
        batch_op.drop_index('ix_prediction_created_at_id')
        batch_op.create_index('ix_prediction_observed_at_covering', ['observed_at', 'id', *STATS_COLUMNS], unique=False)
        batch_op.create_index('ix_prediction_created_at_covering', ['created_at', 'id', *STATS_COLUMNS], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('prediction', schema=None) as batch_op:
        batch_op.drop_index('ix_prediction_created_at_covering')
        batch_op.drop_index('ix_prediction_observed_at_covering')
        batch_op.create_index('ix_prediction_observed_at_id', ['observed_at', 'id'], unique=False)
        batch_op.create_index('ix_prediction_created_at_id', ['created_at', 'id'], unique=False)
