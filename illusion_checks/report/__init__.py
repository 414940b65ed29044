"""The HTML fate report: one self-contained page rendered from a results JSON alone."""

from illusion_checks.report.render import make_report, write_report

__all__ = ["make_report", "write_report"]
