"""Deterministic workflow code and the types shared with activities and the API."""
