import datetime as dt

from timebank.ledger.service import post_transfer


def test_member_sees_own_statement_and_csv_not_others(client, session, timebank, make_person, login):
    u1, m1 = make_person("member")
    _u2, m2 = make_person("member")
    post_transfer(session, timebank_id=timebank.id, kind="exchange", effective_date=dt.date(2026, 11, 3),
                  postings=[(m2.account_id, -90), (m1.account_id, 90)], memo="Fixed a <b>shelf</b>")
    session.commit()
    login(u1)
    page = client.get(f"/accounts/{m1.account_id}/statement?from=2026-11-01&to=2026-11-30")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Fixed a &lt;b&gt;shelf&lt;/b&gt;" in text and "1 hour 30 minutes" in text
    csv = client.get(f"/accounts/{m1.account_id}/statement?from=2026-11-01&to=2026-11-30&format=csv")
    assert csv.mimetype == "text/csv" and ",90,90" in csv.get_data(as_text=True)
    assert client.get(f"/accounts/{m2.account_id}/statement").status_code == 403
    assert client.get("/accounts/999999/statement").status_code == 404
