"""Pareto reports: ``ReportData.from_storage(...)`` then ``render(data, out_dir)`` (torch-free)."""

from automc.report.data import ReportData, TrialRow, plan_summary
from automc.report.render import FILES, render

__all__ = ["FILES", "ReportData", "TrialRow", "plan_summary", "render"]
