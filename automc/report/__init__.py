"""Pareto reports: ``ReportData.from_storage(...)`` then ``render(data, out_dir)`` (torch-free)."""

from automc.report.data import ReportData, plan_summary
from automc.report.render import FILES, render

__all__ = ["FILES", "ReportData", "plan_summary", "render"]
