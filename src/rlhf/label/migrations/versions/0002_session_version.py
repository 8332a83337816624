"""Per-user session version (logout and password changes end every session), and
the cookie-signing secret moves out of the database into its own owner-only file.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("session_version", sa.Integer(), nullable=False, server_default="0"))
    # The old secret sat in a database file that was created world-readable: anyone who
    # could read the file could forge an admin's cookie. Dropping it logs everyone out once.
    op.execute("DELETE FROM settings WHERE key = 'session_secret'")


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_version")
