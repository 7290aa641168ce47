"""The audit part of the report in headless Chromium (see test_browser.py): the editing experiment on
the hand-built cue model (tests/audit/test_audit_edit.py), its units and test table, the card flag."""

from __future__ import annotations

import pytest
from test_audit_edit import described_run, sets

from tests.helpers.audit_models import cue_model
from tests.report.test_browser import browser, page  # noqa: F401  (fixtures)
from unitscope.audit.edit import edit_experiment, write_tables
from unitscope.report import write_report

pytestmark = pytest.mark.browser


def test_edit_section_table_and_flag(tmp_path, page):
    run, s = described_run(tmp_path), sets()
    out = edit_experiment(cue_model(), run, "sign", s, s, draws=2, model_name="cue_model", say=lambda *_: None)
    write_tables(run, out)
    page.open(write_report(run, title="edit").as_uri())
    pg = page.page
    sec = pg.locator(".part-section.part-audit")
    assert sec.count() == 1
    rows = sec.locator("table.edit-results tr")
    assert rows.count() == 1 + 6  # none, described, 2 random, their mean, important
    assert rows.nth(2).locator("td").all_inner_texts() == ["described", "1", "100.0%", "100.0%", "100.0%"]
    assert sec.locator("table.edit-units tr.removed td").first.inner_text() == "1"
    assert page.visible() == 3
    pg.get_by_label("removed by the edit").check()
    assert page.visible() == 1
    assert "removed by the edit" in pg.locator(".card:not([hidden])").inner_text()
