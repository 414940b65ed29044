"""illusion-checks: paired production/recognition probes that gate compressed LLMs."""

__version__ = "0.1.0"
