"""Reports: energy and cost, savings, uptime, water and leaks, maintenance, and the monthly report.

A top-level package because reports are their own stage of the pipeline (store and tickets ->
reports -> API, PDF, CLI): the API and ``facmon report`` both call them, and they compute only on
the store's query primitives, so every backend gives the same numbers.
"""

from reports.context import ReportContext
from reports.period import Period

__all__ = ["Period", "ReportContext"]
