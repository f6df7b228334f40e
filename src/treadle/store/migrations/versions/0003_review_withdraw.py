"""Review actions an admin withdraws: when, by whom and why (the action stays on record); which decisions were final.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('review_actions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('final', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('withdrawn_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('withdrawn_by', sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column('withdrawn_reason', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('review_actions', schema=None) as batch_op:
        for column in ('withdrawn_reason', 'withdrawn_by', 'withdrawn_at', 'final'):
            batch_op.drop_column(column)
