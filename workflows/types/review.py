"""Human reviews: of a gated stage, or of a budget pause (stage ``budget``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from core.vocabulary import Decision, ReviewReason

__all__ = ["AwaitingReview", "Review", "ReviewSignal"]


class Review(BaseModel):
    """A human's review of a gated stage (or of a budget pause: stage ``budget``)."""

    stage: str = Field(examples=["planner"])
    decision: Decision = Field(examples=["request_changes"])
    feedback: str = Field(default="", examples=["Also support division by zero as an error."])


class ReviewSignal(BaseModel):
    """The payload of the ``approve`` / ``request_changes`` / ``reject`` signals."""

    stage: str
    feedback: str = ""


class AwaitingReview(BaseModel):
    stage: str
    reason: ReviewReason
    since: datetime
