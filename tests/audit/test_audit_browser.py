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


def test_description_ablation_summary_table(tmp_path, page):
    from test_audit_analysis import PRESENCE, data, described_run

    from tests.helpers.audit_models import switches
    from unitscope.audit.analysis import cooccurrence_relation, description_ablation, write_ablation

    run = described_run(tmp_path)
    out = description_ablation(
        switches(),
        run,
        "relu",
        data(),
        seeds=2,
        steps=4,
        model_name="switches",
        related=cooccurrence_relation(PRESENCE),
        features=["f1"],
    )
    write_ablation(run, out)
    page.open(write_report(run, title="analysis").as_uri())
    rows = page.page.locator(".part-desc_ablation table.desc-ablation-summary tr")
    assert rows.count() == 1 + 5  # unrelated, single, random, f1_high, f1_low
    f1_low = next(r for r in out["summary"] if r["ordering"] == "f1_low")
    cells = rows.nth(5).locator("td").all_inner_texts()
    assert cells[:3] == ["f1_low", "accuracy", f"{f1_low['auc']:.3f}"]
