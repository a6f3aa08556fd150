"""The incident list's filters, defined once for the four routes that list incidents.

- `ApiFilter` (GET /api/incidents, GET /api/incidents.xlsx): typed, so a bad flag or a search
  longer than `SEARCH_MAX` is the API's 422, documented in its OpenAPI schema.
- `PageFilter` (/incidents, /incidents.xlsx): lenient, since an address typed or edited by hand
  should still show a list: the search box is cut to the limit, an unknown flag is ignored.

Both give the store's arguments (`query`) and the filters in force as text (`chosen`: the page's
form values, the export's title and file name). Without `from __future__ import annotations`:
FastAPI reads the dataclasses' signatures as the dependencies' query parameters.
"""

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query

from store.incident_rows import SEARCH_MAX

SEARCH_HELP = "关键词：标题、内容、短编号（如 2026-1130-007）或编号中含有的文字"
FLAGS = {"true": True, "1": True, "on": True, "false": False, "0": False}
_AS_TEXT = {True: "true", False: "false", None: None}


@dataclass
class ApiFilter:
    phase: str | None = None
    unit: str | None = None
    overdue: bool | None = None
    drill: bool | None = None
    severity: str | None = None
    category: str | None = None
    q: Annotated[str | None, Query(max_length=SEARCH_MAX, description=SEARCH_HELP)] = None

    def query(self) -> dict[str, Any]:
        return {
            "text": self.q,
            "phase": self.phase,
            "unit": self.unit,
            "overdue": self.overdue,
            "drill": self.drill,
            "severity": self.severity,
            "category": self.category,
        }

    def chosen(self) -> dict[str, str | None]:
        return {
            "q": self.q,
            "phase": self.phase,
            "unit": self.unit,
            "severity": self.severity,
            "category": self.category,
            "overdue": _AS_TEXT[self.overdue],
            "drill": _AS_TEXT[self.drill],
        }


@dataclass
class PageFilter:
    phase: str | None = None
    unit: str | None = None
    overdue: str | None = None
    severity: str | None = None
    category: str | None = None
    drill: str | None = None
    q: str | None = None

    def chosen(self) -> dict[str, str | None]:
        # A keyword, or a short number read out on the phone (store/incident_rows.py
        # search_clause); a page's search box is cut to the limit rather than refused.
        return {
            "q": (self.q or "").strip()[:SEARCH_MAX] or None,
            "phase": self.phase,
            "unit": self.unit,
            "severity": self.severity,
            "category": self.category,
            "overdue": self.overdue,
            "drill": self.drill,
        }

    def query(self) -> dict[str, Any]:
        chosen = self.chosen()
        return {
            "text": chosen["q"],
            "phase": self.phase or None,
            "unit": self.unit or None,
            "overdue": FLAGS.get((self.overdue or "").lower()),
            "drill": FLAGS.get((self.drill or "").lower()),
            "severity": self.severity or None,
            "category": self.category or None,
        }


ApiListFilter = Annotated[ApiFilter, Depends()]
PageListFilter = Annotated[PageFilter, Depends()]
