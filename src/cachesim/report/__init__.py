"""Every result as people read it: one module per kind of result (the tables a command prints), the HTML page,
and the helpers their tables share (:mod:`cachesim.report._tables`). The computing modules print nothing.

Modules here import the computing modules only for type checking or inside a function, because those modules
re-export the print functions while they load.
"""

from cachesim.report._tables import format_cell, make_console
from cachesim.report.demo import print_demo
from cachesim.report.fleet import print_fleet
from cachesim.report.html import render_report, write_report
from cachesim.report.interference import print_report
from cachesim.report.mrc import print_curves, print_policy_curves
from cachesim.report.replay import describe_config, print_replay, write_per_request_csv
from cachesim.report.sweep import SCREEN_METRICS, print_sweep

__all__ = ["SCREEN_METRICS", "describe_config", "format_cell", "make_console", "print_curves", "print_demo",
           "print_policy_curves",
           "print_fleet", "print_replay", "print_report", "print_sweep", "render_report", "write_per_request_csv",
           "write_report"]
