"""Observability: structured logs (``logs``), the worker's metrics (``metrics``) and the API's
Prometheus endpoint (``api_metrics``)."""
