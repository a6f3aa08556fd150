"""The plan's vocabulary: severities, categories, phases and the like, with their Chinese labels."""

from __future__ import annotations

from enum import StrEnum


class Severity(StrEnum):
    general = "general"
    major = "major"
    urgent = "urgent"

    @property
    def label(self) -> str:
        return {"general": "一般", "major": "重大", "urgent": "紧急"}[self.value]

    # What each severity means for the forms names the plan's periods: rules.severity_explanation.


class Category(StrEnum):
    inquiry = "inquiry"
    hype = "hype"
    fabrication = "fabrication"
    suggestion = "suggestion"

    @property
    def label(self) -> str:
        return {
            "inquiry": "询问、置疑、诉求",
            "hype": "恶意传播或炒作",
            "fabrication": "捏造、歪曲或夸大事实",
            "suggestion": "建议类",
        }[self.value]

    @property
    def explanation(self) -> str:
        """One sentence from the plan, for the forms."""
        return {
            "inquiry": "群众询问、置疑或提出诉求：能当即回复的当即回复，发现当日内回复处理意见，"
            "办结之日内回复处理结果。",
            "hype": "恶意传播或炒作：依法告知事实真相；仍继续恶意传播的，商请执纪执法部门查处。",
            "fabrication": "捏造、歪曲或夸大事实，恶意攻击、诽谤、煽动或涉嫌违法犯罪："
            "依法澄清事实真相，并商请监察执法部门查处。",
            "suggestion": "对改革、发展、稳定有重要积极意义的建议：积极采纳并按要求予以回复。",
        }[self.value]


class Phase(StrEnum):
    """Where the incident stands: lead (a monitoring lead, unconfirmed) → triage → handling →
    tracking → summary → closed."""

    lead = "lead"
    triage = "triage"
    handling = "handling"
    tracking = "tracking"
    summary = "summary"
    closed = "closed"

    @property
    def label(self) -> str:
        return {
            "lead": "待确认线索",
            "triage": "待研判",
            "handling": "处置中",
            "tracking": "动态跟踪",
            "summary": "待总结",
            "closed": "已结案",
        }[self.value]


class ReplyKind(StrEnum):
    official = "official"  # 官方回复 (R-REPLY); for an inquiry, also its handling opinion
    stance = "stance"  # 表态性回复 (R-STANCE)
    result = "result"  # 处理结果 (R-INQUIRY); as a first reply, an immediate one that settles it

    @property
    def label(self) -> str:
        return {"official": "官方回复", "stance": "表态性回复", "result": "处理结果回复"}[
            self.value
        ]


class ReplyStatus(StrEnum):
    drafted = "drafted"
    rejected = "rejected"
    approved = "approved"
    published = "published"

    @property
    def label(self) -> str:
        return {
            "drafted": "已起草，待审定",
            "rejected": "审定退回",
            "approved": "已审定，待发布",
            "published": "已发布",
        }[self.value]


class TrackStatus(StrEnum):
    active = "active"
    subsided = "subsided"
    flared = "flared"

    @property
    def label(self) -> str:
        return {"active": "仍在发酵", "subsided": "已平息", "flared": "再次升温"}[self.value]


class ManualAccountKind(StrEnum):
    """Records the office adds by hand (R-ACCOUNT)."""

    false_report = "谎报"
    concealment = "瞒报"
    omission = "漏报"  # an incident the unit should have reported and did not
