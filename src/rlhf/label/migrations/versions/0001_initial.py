"""Initial schema: users, items, assignments, answers, settings.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("screening", sa.Boolean(), nullable=False),
        sa.Column("prompt", sa.JSON(), nullable=False),
        sa.Column("prompt_id", sa.String(255), nullable=True),
        sa.Column("responses", sa.JSON(), nullable=True),
        sa.Column("models", sa.JSON(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.Column("reference", sa.JSON(), nullable=True),
        sa.Column("overlap", sa.Integer(), nullable=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("items.id"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("shown_order", sa.JSON(), nullable=True),
        sa.Column("assigned_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("item_id", "user_id", name="uq_assignment_item_user"),
        sa.UniqueConstraint("item_id", "slot", name="uq_assignment_item_slot"),
    )
    op.create_index("ix_assignment_user_status", "assignments", ["user_id", "status"])
    op.create_table(
        "answers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("assignment_id", sa.Integer(), sa.ForeignKey("assignments.id"), nullable=False, unique=True),
        sa.Column("token", sa.String(64), nullable=False, unique=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("ranking", sa.JSON(), nullable=True),
        sa.Column("likert", sa.JSON(), nullable=True),
        sa.Column("flags", sa.JSON(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    for table in ("settings", "answers", "assignments", "items", "users"):
        op.drop_table(table)
