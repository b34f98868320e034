"""The CLI and the three export formats carry the same figures."""
import csv
import io
import json

import pytest
from openpyxl import load_workbook

from tests.impact.fixed_community import Q1, build
from timebank.impact.exports import to_csv, to_json, to_xlsx
from timebank.impact.report import build_report


@pytest.fixture
def report(session):
    c = build(session)
    return build_report([c["timebank"]], *Q1)


def _value(rows, section, measure, label=""):
    return next(r[3] for r in rows if r[0] == section and r[1] == measure and r[2] == label)


def test_csv_xlsx_json_agree(report):
    rows = list(csv.reader(io.StringIO(to_csv(report))))
    assert rows[0] == ["section", "measure", "label", "value"]
    assert _value(rows, "headline", "hours_delivered") == "13.0"
    assert _value(rows, "breakdown:ward", "people", "North") == "fewer than 5"
    sheet = load_workbook(io.BytesIO(to_xlsx(report))).active
    xrows = [tuple(c.value for c in r) for r in sheet.iter_rows()]
    assert _value([tuple("" if v is None else v for v in r) for r in xrows], "headline", "minutes_delivered") == 780
    assert json.loads(to_json(report))["headline"]["minutes_delivered"] == 780


def test_cli_writes_each_format(runner, session, tmp_path):
    build(session)
    session.commit()  # to the test's savepoint: the command's own rollback keeps it
    result = runner.invoke(args=["reports", "impact", "--from", "2025-01-01", "--to", "2025-03-31", "--format", "json",
                                 "--timebank", "fixed"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["headline"]["hours_delivered"] == 13.0
    out = tmp_path / "q1.xlsx"
    result = runner.invoke(args=["reports", "impact", "--from", "2025-01-01", "--to", "2025-03-31", "--format", "xlsx",
                                 "--timebank", "fixed", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert load_workbook(out).active["A1"].value == "section"
    result = runner.invoke(args=["reports", "impact", "--from", "2025-01-01", "--to", "2025-03-31",
                                 "--timebank", "nowhere"])
    assert result.exit_code != 0 and "no time bank called" in result.output
