"""签收 on the incident page (issue 20, item 1): each 交办 and 督办 message to be signed for, and
per person whether it reached them (the inbox always; each external channel by its delivery's
state in the outbox) and whether they signed for it, and when. Signed or not comes from the
incident (its workflow); reached from the store, which the delivery activities write."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from activities.documents import DELIVERY_STATES
from plan.models import IncidentView
from plan.roster import CHANNEL_KINDS, Roster
from store import notifications


def _delivered(d: Any) -> str:
    """ "电子邮件（mail）已送达": the channel's kind and its roster id, then the state."""
    kind = CHANNEL_KINDS.get(d.kind or "", "其他渠道")
    name = d.channel.split(":", 1)[1] if ":" in d.channel else ""
    named = f"{kind}（{name}）" if name and len(name) <= 40 else kind
    return f"{named}{DELIVERY_STATES.get(d.state, d.state)}"


def receipts(s: Session, roster: Roster, view: IncidentView, tz: ZoneInfo) -> list[Any]:
    """The page's 签收情况: one entry per message, one line per person. Blocking (the store):
    the page reads it with the rest of what it shows from the store, in the thread pool."""
    keys = [k for r in view.receipts for k in [r.note_key, *r.resent_notes] if k]
    reached = notifications.reach(s, keys) if keys else {}
    out = []
    for r in view.receipts:
        people = []
        for person in r.persons:
            channels = ["站内消息已送达"] + [
                _delivered(d) for d in reached.get((r.note_key or "", person), [])
            ]
            # The re-sends and repeats (签收's re-sending): to the person, or their stand-in.
            again = [d for k in r.resent_notes for d in reached.get((k, person), [])]
            channels += [f"再次通知：{_delivered(d)}" for d in again]
            signed = r.signed.get(person)
            people.append(
                {
                    "id": person,
                    "name": roster.person_name(person),
                    "reached": "；".join(channels),
                    "signed_at": signed.astimezone(tz) if signed else None,
                }
            )
        out.append({"key": r.key, "label": r.label, "at": r.at, "people": people})
    return out
