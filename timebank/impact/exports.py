"""The report as CSV, XLSX (openpyxl) or JSON: the same figures, flattened to section/measure/label/value rows."""
from __future__ import annotations

import csv
import io
import json


def rows_of(report: dict) -> list[tuple]:
    """(section, measure, label, value) rows: headline, previous, trend, breakdowns, engagement, value."""
    rows: list[tuple] = [("period", "from", "", report["period"]["from"]), ("period", "to", "", report["period"]["to"])]
    for key, value in report["headline"].items():
        rows.append(("headline", key, "", value))
    for key, value in report["previous"].items():
        rows.append(("previous_period", key, "", value))
    for entry in report["trend"]:
        for key in ("hours", "exchanges", "members_active", "members_new"):
            rows.append(("trend", key, entry["period"], entry.get(key, 0)))
    for name, section in report["breakdowns"].items():
        for row in section["rows"]:
            rows.append((f"breakdown:{name}", "hours", row["label"], row["hours"]))
            rows.append((f"breakdown:{name}", "people", row["label"], row["people_display"]))
            if "change_hours" not in row:  # frozen before breakdowns carried the previous period
                continue
            rows.append((f"breakdown:{name}", "hours_previous_period", row["label"], row["previous_hours"]))
            rows.append((f"breakdown:{name}", "people_previous_period", row["label"],
                         row["previous_people_display"]))
            rows.append((f"breakdown:{name}", "change_hours", row["label"], row["change_hours"]))
            rows.append((f"breakdown:{name}", "change_people", row["label"], row["change_people_display"]))
    for key, value in report["engagement"].items():
        rows.append(("engagement", key, "", "" if value is None else value))
    for level in report["value"]["levels"]:
        rows.append(("value", level["level"], f'{level["rate_per_hour"]} {level["currency"]}/hour, '
                     f'{level["source"]} ({level["year"]})', level["value"]))
    if report["value"].get("funding"):
        rows.append(("value", "funding", "", report["value"]["funding"]))
    unmet = report["unmet_need"]
    if unmet.get("available"):
        for key in ("days", "open_longer_than_days", "requests_posted", "requests_matched", "days_to_match_median",
                    "days_to_match_p90"):
            rows.append(("unmet_need", key, "", "" if unmet[key] is None else unmet[key]))
        for key in ("by_category", "by_area"):
            for row in unmet[key]:
                rows.append((f"unmet_need:{key}", "requests", row["label"], row["requests_display"]))
    else:
        rows.append(("unmet_need", "available", unmet["note"], "no"))
    if report.get("closed"):
        rows.append(("closed", "content_hash", report["closed"]["closed_at"], report["closed"]["content_hash"]))
    return rows


HEADER = ("section", "measure", "label", "value")


def _safe(value):
    """A text cell starting with = + - @ would run as a spreadsheet formula: prefix it with a quote."""
    if isinstance(value, str) and value and value[0] in "=+-@":
        return "'" + value
    return value


def to_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    for row in rows_of(report):
        # A leading = + - @ would make a spreadsheet run a formula.
        writer.writerow([_safe(v) for v in row])
    return out.getvalue()


def to_xlsx(report: dict) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Impact"
    sheet.append(HEADER)
    for row in rows_of(report):
        sheet.append([_safe(v) for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=True, default=str)


FORMATS = {"csv": ("text/csv; charset=utf-8", to_csv), "xlsx": (
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", to_xlsx),
    "json": ("application/json", to_json)}
