"""Who is signing in: staff's personal bearer tokens (the API, the CLI, the sign-in page), the
one-time sign-in links in their messages, and the browser sessions of the pages. Only a SHA-256
of any of them is stored.

(starter/web/auth.py is the web side: cookies, CSRF and sign-in; it asks this module.)
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from store.models import ApiToken, SignInLink, WebSession, utcnow

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
    revoke_links(session, person_id=person_id)  # and their sign-in links no longer sign in
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


# --- one-time sign-in links (minted by the `deliver` activity, used on the pages) ---

# How long a link signs in when nobody says (YUQING_SIGN_IN_LINK_HOURS).
LINK_HOURS = 24.0
LINK_PREFIX = "yql_"

LinkState = Literal["live", "used", "expired", "revoked"]


@dataclass(frozen=True)
class LinkFound:
    """A link's person, the incident it leads to, and whether it can still sign in."""

    person_id: str
    incident_id: str
    state: LinkState


def create_link(
    session: Session, *, person_id: str, incident_id: str, hours: float = LINK_HOURS
) -> str:
    """A new one-time link token for `person_id` to `incident_id`'s page; only its hash is
    stored. Every call mints another: a retried delivery's link does not end an earlier one."""
    if not hours > 0:
        raise ValueError("a sign-in link must be valid for some time")
    token = LINK_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        SignInLink(
            person_id=person_id,
            incident_id=incident_id,
            link_hash=_hash(token),
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    )
    return token


def find_link(session: Session, *, token: str) -> LinkFound | None:
    """What a link token is, without using it (the confirm page); None for an unknown one."""
    row = session.scalar(select(SignInLink).where(SignInLink.link_hash == _hash(token)))
    if row is None:
        return None
    state: LinkState = "live"
    if row.revoked_at is not None:
        state = "revoked"
    elif row.used_at is not None:
        state = "used"
    elif row.expires_at <= utcnow():
        state = "expired"
    return LinkFound(person_id=row.person_id, incident_id=row.incident_id, state=state)


def use_link(session: Session, *, token: str) -> LinkFound | None:
    """Use a live link once: one UPDATE that only a live row matches, so of two requests with
    the same link (two taps, two devices) exactly one signs in. None when it was not live."""
    now = utcnow()
    used = session.execute(
        update(SignInLink)
        .where(
            SignInLink.link_hash == _hash(token),
            SignInLink.used_at.is_(None),
            SignInLink.revoked_at.is_(None),
            SignInLink.expires_at > now,
        )
        .values(used_at=now)
    )
    if cast("CursorResult[Any]", used).rowcount != 1:
        return None
    found = find_link(session, token=token)
    return found and LinkFound(
        person_id=found.person_id, incident_id=found.incident_id, state="live"
    )


def revoke_links(session: Session, *, person_id: str) -> int:
    """Revoke every live link of a person (`yuqing token revoke`, `yuqing link revoke`); one
    used or expired keeps saying so."""
    now = utcnow()
    revoked = session.execute(
        update(SignInLink)
        .where(
            SignInLink.person_id == person_id,
            SignInLink.revoked_at.is_(None),
            SignInLink.used_at.is_(None),
            SignInLink.expires_at > now,
        )
        .values(revoked_at=now)
    )
    return cast("CursorResult[Any]", revoked).rowcount
