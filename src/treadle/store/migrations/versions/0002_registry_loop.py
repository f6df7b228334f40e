"""Registry and loop: model versions, version events, aliases and their history, loop runs and steps.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('model_versions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('base_model', sa.String(length=512), nullable=False),
    sa.Column('path', sa.Text(), nullable=True),
    sa.Column('content_hash', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=256), nullable=False),
    sa.Column('dataset_ids', sa.JSON(), nullable=False),
    sa.Column('run_record', sa.JSON(), nullable=True),
    sa.Column('evals', sa.JSON(), nullable=False),
    sa.Column('gate_verdicts', sa.JSON(), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_versions_status'), ['status'], unique=False)
    op.create_table('version_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=256), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('version_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_version_events_version_id'), ['version_id'], unique=False)
    op.create_table('aliases',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('weights', sa.JSON(), nullable=False),
    sa.Column('production', sa.String(length=128), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('alias_history',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('alias', sa.String(length=128), nullable=False),
    sa.Column('weights', sa.JSON(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=256), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('alias_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alias_history_alias'), ['alias'], unique=False)
        batch_op.create_index(batch_op.f('ix_alias_history_started_at'), ['started_at'], unique=False)
    op.create_table('loop_runs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('alias', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('step', sa.String(length=32), nullable=False),
    sa.Column('candidate', sa.String(length=128), nullable=True),
    sa.Column('state', sa.JSON(), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('loop_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_loop_runs_alias'), ['alias'], unique=False)
        batch_op.create_index(batch_op.f('ix_loop_runs_status'), ['status'], unique=False)
    op.create_table('loop_steps',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['loop_runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('loop_steps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_loop_steps_run_id'), ['run_id'], unique=False)


def downgrade() -> None:
    for table in ('loop_steps', 'loop_runs', 'alias_history', 'aliases', 'version_events', 'model_versions'):
        op.drop_table(table)
