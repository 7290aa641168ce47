"""Reports of a run folder: ``report.json`` + images + one static ``index.html`` (offline).

    from unitscope.report import write_report
    write_report(Path("runs/my-run"))     # -> runs/my-run/index.html
"""

from unitscope.report.writer import build_report, write_report

__all__ = ["build_report", "write_report"]
