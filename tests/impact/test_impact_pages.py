"""The dashboard, print view, downloads and closing a period, as people see them."""
import datetime as dt

import pytest

from tests.impact.fixed_community import build
from timebank.community.service import add_membership, create_user

Q1 = {"timebank": "fixed", "from": "2025-01-01", "to": "2025-03-31"}
Q1_DATES = (dt.date(2025, 1, 1), dt.date(2025, 3, 31))


@pytest.fixture
def community(session):
    c = build(session)
    session.commit()  # to the test's savepoint, so error responses' rollbacks keep it
    return c


@pytest.fixture
def as_role(session, community, login):
    def make(role):
        user = create_user(session, email=f"{role}-page@example.test", display_name=f"{role} page",
                           password="pw-123456789")
        add_membership(session, user=user, timebank=community["timebank"], role=role)
        session.commit()
        login(user)
        return user
    return make


def test_commissioner_sees_dashboard_with_charts_and_tables(client, as_role):
    as_role("commissioner")
    page = client.get("/reports/", query_string=Q1)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<td class="num" data-measure="hours_delivered">13.0</td>' in html
    assert 'role="img"' in html and "<title" in html and "Trend by month" in html
    assert "fewer than 5" in html
    assert "Person a" not in html
    assert "Requests open longer than 30 days" in html and "Change in people" in html
    assert "GBP 163.80" in html
    assert "Close this period" not in html  # only admins close periods
    assert 'href="/reports/" aria-current="page">Impact</a>' in html  # navigation


def test_member_is_refused(client, as_role):
    as_role("member")
    assert client.get("/reports/", query_string=Q1).status_code == 403


def test_bad_date_is_explained(client, as_role):
    as_role("broker")
    page = client.get("/reports/", query_string={**Q1, "from": "first of may"})
    assert page.status_code == 422 and "YYYY-MM-DD" in page.get_data(as_text=True)


def test_downloads_and_print_view(client, as_role):
    as_role("broker")
    csv = client.get("/reports/download.csv", query_string=Q1)
    assert csv.status_code == 200 and "headline,hours_delivered,,13.0" in csv.get_data(as_text=True)
    xlsx = client.get("/reports/download.xlsx", query_string=Q1)
    assert xlsx.status_code == 200 and xlsx.data[:2] == b"PK"
    assert client.get("/reports/download.json", query_string=Q1).get_json()["headline"]["minutes_delivered"] == 780
    printed = client.get("/reports/print", query_string=Q1).get_data(as_text=True)
    assert "Impact report" in printed and "print.css" in printed and "13.0" in printed


def test_admin_closes_period_and_dashboard_says_so(client, as_role):
    as_role("admin")
    assert "Close this period" in client.get("/reports/", query_string=Q1).get_data(as_text=True)
    response = client.post("/reports/close", data=Q1)
    assert response.status_code == 303
    html = client.get("/reports/", query_string=Q1).get_data(as_text=True)
    assert "This period is closed" in html and "Corrections made later appear in the period" in html
    assert "Close this period" not in html


def test_a_period_frozen_before_breakdowns_had_previous_figures_still_shows(client, session, community, as_role):
    """Frozen reports never change: one stored in the earlier shape (no previous period per breakdown row, unmet
    need not available) must still render and download."""
    import json

    from timebank.impact.service import canonical_json, close_period, content_hash

    closed = close_period(session, timebank=community["timebank"], start=Q1_DATES[0], end=Q1_DATES[1])
    old = json.loads(closed.report_json)
    for section in old["breakdowns"].values():
        for row in section["rows"]:
            for key in [k for k in row if k.startswith(("previous_", "change_"))]:
                del row[key]
    old["unmet_need"] = {"available": False, "note": "Not available yet"}
    closed.report_json = canonical_json(old)
    closed.content_hash = content_hash(closed.report_json)
    session.commit()
    as_role("commissioner")
    page = client.get("/reports/", query_string=Q1)
    assert page.status_code == 200 and "This period is closed" in page.get_data(as_text=True)
    assert "Not available yet" in page.get_data(as_text=True)
    download = client.get("/reports/download.csv", query_string=Q1)
    assert download.status_code == 200 and "headline,minutes_delivered,,780" in download.get_data(as_text=True)


def test_a_long_breakdown_shows_its_top_rows_and_a_link_to_all(client, as_role, monkeypatch):
    from timebank.web import reports

    as_role("commissioner")
    full = client.get("/reports/download.json", query_string=Q1).get_json()["breakdowns"]["coproduction_type"]["rows"]
    assert len(full) > 1
    monkeypatch.setattr(reports, "PAGE_ROWS", 1)
    html = client.get("/reports/", query_string=Q1).get_data(as_text=True)
    section = html.split('id="bd-coproduction_type"')[1].split("</section>")[0]
    top, rest = full[0]["label"].replace("_", " "), full[1]["label"].replace("_", " ")
    assert f'<th scope="row">{top}</th>' in section and f'<th scope="row">{rest}</th>' not in section
    assert f"The 1 with most hours of {len(full)}." in section and "all=coproduction_type" in section
    every = client.get("/reports/", query_string={**Q1, "all": "coproduction_type"}).get_data(as_text=True)
    section = every.split('id="bd-coproduction_type"')[1].split("</section>")[0]
    assert f'<th scope="row">{rest}</th>' in section and "with most hours of" not in section
