"""Who is signing in: staff's personal bearer tokens (the API, the CLI, the sign-in page) and
the browser sessions of the pages. Only a SHA-256 of either is stored.

(starter/web/auth.py is the web side: cookies, CSRF and sign-in; it asks this module.)
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import ApiToken, WebSession, utcnow

# How long a personal token lasts when nobody says (the CLI passes YUQING_TOKEN_DAYS).
TOKEN_DAYS = 180


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- personal tokens (the API, the CLI, signing in) ---


def create_token(
    session: Session, *, person_id: str, label: str | None = None, days: float = TOKEN_DAYS
) -> str:
    """A new bearer token for a roster person, valid for `days`; only its hash is stored."""
    if not days > 0:
        raise ValueError("a token must be valid for some time")
    token = "yq_" + secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        ApiToken(
            person_id=person_id,
            token_hash=_hash(token),
            label=label,
            created_at=now,
            expires_at=now + timedelta(days=days),
        )
    )
    return token


def person_for_token(session: Session, *, token: str) -> str | None:
    """The person of a live token: not revoked, not expired."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash(token)))
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
        return None
    return row.person_id


def revoke_tokens(session: Session, *, person_id: str) -> int:
    rows = session.scalars(
        select(ApiToken).where(ApiToken.person_id == person_id, ApiToken.revoked_at.is_(None))
    ).all()
    for row in rows:
        row.revoked_at = utcnow()
    end_sessions(session, person_id=person_id)  # a revoked person is signed out of the pages too
    return len(rows)


def list_tokens(session: Session) -> Sequence[ApiToken]:
    """Every token, newest first (the hashes only; a token is never stored)."""
    return session.scalars(select(ApiToken).order_by(ApiToken.id.desc())).all()


# --- browser sessions (the pages) ---


def create_session(session: Session, *, person_id: str, hours: float) -> str:
    """A new, random session id for a signed-in person; only its hash is stored."""
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        WebSession(
            person_id=person_id,
            session_hash=_hash(session_id),
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    )
    return session_id


def person_for_session(session: Session, *, session_id: str) -> str | None:
    """The person of a live session: not ended, not expired."""
    row = session.scalar(select(WebSession).where(WebSession.session_hash == _hash(session_id)))
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
        return None
    return row.person_id


def end_session(session: Session, *, session_id: str) -> bool:
    row = session.scalar(select(WebSession).where(WebSession.session_hash == _hash(session_id)))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True


def end_sessions(session: Session, *, person_id: str) -> int:
    rows = session.scalars(
        select(WebSession).where(WebSession.person_id == person_id, WebSession.revoked_at.is_(None))
    ).all()
    for row in rows:
        row.revoked_at = utcnow()
    return len(rows)
