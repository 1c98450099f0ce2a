"""Human reviews: of a gated stage, or of a budget pause (stage ``budget``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from core.vocabulary import Decision, ReviewReason

__all__ = ["MAX_FEEDBACK_CHARS", "AwaitingReview", "Review", "ReviewSignal"]


MAX_FEEDBACK_CHARS = 20_000  # well under Temporal's 2 MB payload limit, whatever the encoding


class Review(BaseModel):
    """A human's review of a gated stage (or of a budget pause: stage ``budget``)."""

    stage: str = Field(max_length=32, examples=["planner"])
    decision: Decision = Field(examples=["request_changes"])
    feedback: str = Field(
        default="", max_length=MAX_FEEDBACK_CHARS, examples=["Also support division by zero."]
    )


class ReviewSignal(BaseModel):
    """The payload of the ``approve`` / ``request_changes`` / ``reject`` signals."""

    stage: str
    feedback: str = Field(default="", max_length=MAX_FEEDBACK_CHARS)


class AwaitingReview(BaseModel):
    stage: str
    reason: ReviewReason
    since: datetime
