"""Temporal servers in tests."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

__all__ = ["temporal_address"]


def temporal_address(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host
