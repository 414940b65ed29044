"""Served models over the OpenAI-compatible HTTP API (`/v1/completions`)."""
