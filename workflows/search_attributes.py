"""Custom search attributes codexflow upserts, so operators can filter runs in the Temporal UI."""

from temporalio.common import SearchAttributeKey

STAGE = SearchAttributeKey.for_keyword("CodexflowStage")
PROJECT = SearchAttributeKey.for_keyword("CodexflowProject")

ALL = (STAGE, PROJECT)
