"""model lifecycle: activation history, evaluations, outcomes, input profiles, golden sets,
explanations and warnings stored with predictions

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 19:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import persistence.types

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('model_version', schema=None) as batch_op:
        batch_op.add_column(sa.Column('input_profile', _json(), nullable=True))
        batch_op.add_column(sa.Column('golden_set', _json(), nullable=True))
    with op.batch_alter_table('prediction', schema=None) as batch_op:
        batch_op.add_column(sa.Column('explanation', _json(), nullable=True))
        batch_op.add_column(sa.Column('warnings', _json(), nullable=True))
    op.create_table(
        'model_activation',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('activated_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('to_version_id', sa.Integer(), nullable=False),
        sa.Column('from_version_id', sa.Integer(), nullable=True),
        sa.Column('subject', sa.String(length=255), nullable=True),
        sa.Column('reason', sa.String(length=1000), nullable=True),
        sa.Column('via', sa.String(length=16), nullable=False),
        sa.Column('request_id', sa.Uuid(), nullable=True),
        sa.CheckConstraint("via IN ('api', 'cli', 'train')", name=op.f('ck_model_activation_via_known')),
        sa.ForeignKeyConstraint(['from_version_id'], ['model_version.id'], name=op.f('fk_model_activation_from_version_id_model_version')),
        sa.ForeignKeyConstraint(['to_version_id'], ['model_version.id'], name=op.f('fk_model_activation_to_version_id_model_version')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_model_activation')),
    )
    op.create_index(op.f('ix_model_activation_to_version_id'), 'model_activation', ['to_version_id'], unique=False)
    # Versions active before the history began: one 'cli' entry each, so rollback has a past.
    op.execute(
        "INSERT INTO model_activation (activated_at, to_version_id, via, reason) "
        "SELECT COALESCE(activated_at, created_at), id, 'cli', 'active before activation history' "
        "FROM model_version WHERE is_active"
    )
    op.create_table(
        'model_evaluation',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('model_version_id', sa.Integer(), nullable=False),
        sa.Column('evaluated_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('data_source', sa.String(length=255), nullable=False),
        sa.Column('data_sha256', sa.String(length=80), nullable=False),
        sa.Column('data_rows', sa.Integer(), nullable=False),
        sa.Column('data_failures', sa.Integer(), nullable=False),
        sa.Column('same_data_as_training', sa.Boolean(), nullable=False),
        sa.Column('metrics', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
        sa.Column('tolerance', sa.Float(), nullable=False),
        sa.Column('passed', sa.Boolean(), nullable=False),
        sa.Column('findings', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
        sa.Column('hostname', sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(['model_version_id'], ['model_version.id'], name=op.f('fk_model_evaluation_model_version_id_model_version')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_model_evaluation')),
    )
    op.create_index(op.f('ix_model_evaluation_model_version_id'), 'model_evaluation', ['model_version_id'], unique=False)
    op.create_table(
        'outcome',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('device_id', sa.String(length=64), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('failed', sa.Boolean(), nullable=False),
        sa.Column('observed_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('recorded_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('subject', sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_outcome')),
        sa.UniqueConstraint('device_id', 'day', name=op.f('uq_outcome_device_id_day')),
    )
    op.create_index(op.f('ix_outcome_observed_at'), 'outcome', ['observed_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_outcome_observed_at'), table_name='outcome')
    op.drop_table('outcome')
    op.drop_index(op.f('ix_model_evaluation_model_version_id'), table_name='model_evaluation')
    op.drop_table('model_evaluation')
    op.drop_index(op.f('ix_model_activation_to_version_id'), table_name='model_activation')
    op.drop_table('model_activation')
    with op.batch_alter_table('prediction', schema=None) as batch_op:
        batch_op.drop_column('warnings')
        batch_op.drop_column('explanation')
    with op.batch_alter_table('model_version', schema=None) as batch_op:
        batch_op.drop_column('golden_set')
        batch_op.drop_column('input_profile')
