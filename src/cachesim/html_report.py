"""Old home of the HTML report, now :mod:`cachesim.report.html`.

Kept only because ``cachesim.cli`` still imports ``write_report`` from here; remove once the cli package imports
it from :mod:`cachesim.report`.
"""

from cachesim.report.html import render_report, write_report

__all__ = ["render_report", "write_report"]
