"""Reports of a run folder: ``report.json`` + images + one static ``index.html`` (offline).

    from unitscope.report import write_report
    write_report(Path("runs/my-run"))     # -> runs/my-run/index.html

Each analysis adds its section and card rows as a :class:`ReportPart` (see
:mod:`unitscope.report.parts`); dissection and feature visualisation are the built-in ones.
"""

from unitscope.report.parts import ReportPart, register_part, registered_parts
from unitscope.report.writer import build_report, write_report

__all__ = ["ReportPart", "build_report", "register_part", "registered_parts", "write_report"]
