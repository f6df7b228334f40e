"""Initial schema: interactions, feedback, API keys, review items and actions, datasets and their items.

Revision ID: 0001
Revises: (none)
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('user', sa.String(length=256), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash')
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_user'), ['user'], unique=False)

    op.create_table('datasets',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('out_dir', sa.Text(), nullable=True),
    sa.Column('manifest', sa.JSON(), nullable=False),
    sa.Column('tainted_reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name', 'version', name='uq_dataset_name_version')
    )
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_datasets_content_hash'), ['content_hash'], unique=False)

    op.create_table('interactions',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('user', sa.String(length=256), nullable=False),
    sa.Column('key_user', sa.String(length=256), nullable=True),
    sa.Column('endpoint', sa.String(length=16), nullable=False),
    sa.Column('request', sa.JSON(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('output', sa.Text(), nullable=False),
    sa.Column('choices', sa.JSON(), nullable=True),
    sa.Column('finish_reason', sa.String(length=32), nullable=True),
    sa.Column('model_name', sa.String(length=256), nullable=False),
    sa.Column('model_version', sa.String(length=128), nullable=True),
    sa.Column('replica', sa.String(length=256), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('stream', sa.Boolean(), nullable=False),
    sa.Column('prompt_tokens', sa.Integer(), nullable=True),
    sa.Column('completion_tokens', sa.Integer(), nullable=True),
    sa.Column('cached_tokens', sa.Integer(), nullable=True),
    sa.Column('ttft_s', sa.Float(), nullable=True),
    sa.Column('e2e_s', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_interactions_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_interactions_key_user'), ['key_user'], unique=False)
        batch_op.create_index(batch_op.f('ix_interactions_model_name'), ['model_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_interactions_user'), ['user'], unique=False)

    op.create_table('dataset_items',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('split', sa.String(length=8), nullable=False),
    sa.Column('record_hash', sa.String(length=64), nullable=False),
    sa.Column('response_id', sa.String(length=128), nullable=True),
    sa.Column('user', sa.String(length=256), nullable=True),
    sa.Column('feedback_id', sa.Integer(), nullable=True),
    sa.Column('review_item_id', sa.Integer(), nullable=True),
    sa.Column('replay_of', sa.Integer(), nullable=True),
    sa.Column('record', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('dataset_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dataset_items_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dataset_items_feedback_id'), ['feedback_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dataset_items_response_id'), ['response_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dataset_items_review_item_id'), ['review_item_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dataset_items_user'), ['user'], unique=False)

    op.create_table('feedback',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('response_id', sa.String(length=128), nullable=False),
    sa.Column('user', sa.String(length=256), nullable=False),
    sa.Column('thumbs', sa.String(length=8), nullable=True),
    sa.Column('rating', sa.Integer(), nullable=True),
    sa.Column('correction', sa.Text(), nullable=True),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('tags', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['response_id'], ['interactions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('response_id', 'user', name='uq_feedback_response_user')
    )
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_feedback_response_id'), ['response_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_feedback_updated_at'), ['updated_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_feedback_user'), ['user'], unique=False)

    op.create_table('review_items',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('response_id', sa.String(length=128), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('required_reviews', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('decided_at', sa.DateTime(), nullable=True),
    sa.Column('final_reply', sa.Text(), nullable=True),
    sa.Column('final_label', sa.String(length=256), nullable=True),
    sa.Column('reject_reason', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['response_id'], ['interactions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('response_id')
    )
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_review_items_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_review_items_status'), ['status'], unique=False)

    op.create_table('review_actions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('reviewer', sa.String(length=256), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('reply', sa.Text(), nullable=True),
    sa.Column('reason', sa.String(length=256), nullable=True),
    sa.Column('label', sa.String(length=256), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['review_items.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('review_actions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_review_actions_item_id'), ['item_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_review_actions_reviewer'), ['reviewer'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('review_actions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_review_actions_reviewer'))
        batch_op.drop_index(batch_op.f('ix_review_actions_item_id'))

    op.drop_table('review_actions')
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_review_items_status'))
        batch_op.drop_index(batch_op.f('ix_review_items_created_at'))

    op.drop_table('review_items')
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_feedback_user'))
        batch_op.drop_index(batch_op.f('ix_feedback_updated_at'))
        batch_op.drop_index(batch_op.f('ix_feedback_response_id'))

    op.drop_table('feedback')
    with op.batch_alter_table('dataset_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dataset_items_user'))
        batch_op.drop_index(batch_op.f('ix_dataset_items_review_item_id'))
        batch_op.drop_index(batch_op.f('ix_dataset_items_response_id'))
        batch_op.drop_index(batch_op.f('ix_dataset_items_feedback_id'))
        batch_op.drop_index(batch_op.f('ix_dataset_items_dataset_id'))

    op.drop_table('dataset_items')
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_interactions_user'))
        batch_op.drop_index(batch_op.f('ix_interactions_model_name'))
        batch_op.drop_index(batch_op.f('ix_interactions_key_user'))
        batch_op.drop_index(batch_op.f('ix_interactions_created_at'))

    op.drop_table('interactions')
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_datasets_content_hash'))

    op.drop_table('datasets')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_user'))

    op.drop_table('api_keys')
