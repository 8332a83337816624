"""Tables of the labeling app. The schema is created and upgraded by the Alembic
migrations in `migrations/versions`; a test checks the two agree.

Times are naive UTC everywhere: SQLite keeps no time zone, and mixing aware and
naive datetimes between backends is a bug waiting to happen.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ROLES = ("labeler", "admin")
# candidate: created, must pass screening; approved: gets real tasks; disabled: cannot log in.
STATUSES = ("candidate", "approved", "disabled")
TASK_KINDS = ("demonstration", "ranking")
# Ids are 32-bit integers on PostgreSQL: a larger id in a URL is simply not found.
MAX_ID = 2**31 - 1


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The username is the `labeler_id` of exported records.
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="labeler")
    status: Mapped[str] = mapped_column(String(16), default="candidate")
    # A session is valid only while it carries this number: logging out and changing
    # the password bump it, which ends every session of the account at once.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Item(Base):
    """One thing to label: a prompt to demonstrate, or a prompt with K responses to rank."""

    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    screening: Mapped[bool] = mapped_column(Boolean, default=False)
    prompt: Mapped[object] = mapped_column(JSON)  # str or list of messages
    prompt_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    responses: Mapped[list | None] = mapped_column(JSON, nullable=True)
    models: Mapped[list | None] = mapped_column(JSON, nullable=True)
    extra: Mapped[dict] = mapped_column(JSON, default=dict)  # unknown record fields, kept for export
    reference: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # screening: the known answer
    overlap: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: the `overlap` setting
    # sha256 of the content: importing the same task twice is a no-op, not a duplicate.
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Assignment(Base):
    """An item given to one labeler. `slot` in 0..overlap-1 is what makes assignment
    race-free: (item_id, slot) is unique, so two labelers racing for the last slot of
    an item cannot both commit. Screening, skipped and expired assignments have no slot.

An open assignment holds its slot for the lease (the `lease_minutes` setting) from
`assigned_at`; after that another labeler may take the slot over, and the
assignment becomes `expired`."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("item_id", "user_id", name="uq_assignment_item_user"),
        UniqueConstraint("item_id", "slot", name="uq_assignment_item_slot"),
        Index("ix_assignment_user_status", "user_id", "status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    slot: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | submitted | skipped | expired
    shown_order: Mapped[list | None] = mapped_column(JSON, nullable=True)  # response indices, top first
    assigned_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Answer(Base):
    """A submitted answer. One per assignment (unique), and `token` (one per rendered
    form) tells a double-clicked submit (same token: same answer) from a stale form."""

    __tablename__ = "answers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), unique=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    response: Mapped[str | None] = mapped_column(Text, nullable=True)
    ranking: Mapped[list | None] = mapped_column(JSON, nullable=True)  # groups, best first
    likert: Mapped[list | None] = mapped_column(JSON, nullable=True)
    flags: Mapped[list | None] = mapped_column(JSON, nullable=True)  # per response: flag -> bool
    seconds: Mapped[float] = mapped_column(Float, default=0.0)  # from assignment to submit
    submitted_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Setting(Base):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
