"""Custom search attributes codexflow upserts, so operators can filter runs in the Temporal UI."""

from temporalio.common import SearchAttributeKey

STAGE = SearchAttributeKey.for_keyword("CodexflowStage")
PROJECT = SearchAttributeKey.for_keyword("CodexflowProject")
PROJECT_NAME = SearchAttributeKey.for_keyword("CodexflowProjectName")
# How the run ended: an Outcome (approved, rejected, ...), or failed / cancelled.
OUTCOME = SearchAttributeKey.for_keyword("CodexflowOutcome")
# Set while the run waits for a person: "gate" or "budget" (`CodexflowWaiting IS NOT NULL`).
WAITING = SearchAttributeKey.for_keyword("CodexflowWaiting")

ALL = (STAGE, PROJECT, PROJECT_NAME, OUTCOME, WAITING)
