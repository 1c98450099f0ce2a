"""The names the API calls workflows, their queries and updates by (with the types they take and
answer, in this package): the API never imports workflow code, which brings the agents SDK
(seconds to import). ``tests/workflows/test_calls.py`` holds them to the definitions."""

from __future__ import annotations

__all__ = [
    "CHAT_SEND",
    "CHAT_WORKFLOW",
    "DELIVERY_WORKFLOW",
    "IMPORT_WORKFLOW",
    "PIPELINE_REVIEW",
    "PIPELINE_STATUS",
    "PIPELINE_WORKFLOW",
]

PIPELINE_WORKFLOW = "PipelineWorkflow"  # PipelineInput → PipelineResult
PIPELINE_STATUS = "status"  # → PipelineStatus
PIPELINE_REVIEW = "review"  # Review → AwaitingReview
CHAT_WORKFLOW = "AgentChatWorkflow"  # ChatInput
CHAT_SEND = "send"  # ChatMessage → ChatReply
IMPORT_WORKFLOW = "ImportProjectWorkflow"  # ImportInput
DELIVERY_WORKFLOW = "DeliveryWorkflow"  # PushInput → Delivery
