"""The monthly management report: a portfolio summary and one page per building, built from the
section reports (energy, savings, availability, water, maintenance) and rendered as JSON, CSV,
HTML or PDF in zh-CN or en."""

from reports.monthly.build import build_monthly
from reports.monthly.model import MonthlyReport
from reports.monthly.render import FORMATS, Rendered, render

__all__ = ["FORMATS", "MonthlyReport", "Rendered", "build_monthly", "render"]
