"""My profile: coordinates for distance matching; the audit log in names, not ids."""
from __future__ import annotations

import pytest


def test_member_sets_and_clears_coordinates_on_their_profile(client, world, login, session):
    login(world.member)
    saved = client.post("/profile", data={"latitude": "54.9783", "longitude": "-1,6178"})
    assert saved.status_code == 302
    session.refresh(world.member_m)
    assert (world.member_m.latitude, world.member_m.longitude) == (54.9783, -1.6178)
    page = client.get("/profile").get_data(as_text=True)
    assert 'value="54.9783"' in page and 'value="-1.6178"' in page
    cleared = client.post("/profile", data={"latitude": "", "longitude": ""})
    assert cleared.status_code == 302
    session.refresh(world.member_m)
    assert world.member_m.latitude is None and world.member_m.longitude is None


@pytest.mark.parametrize("latitude,longitude,words", [
    ("91", "0", "Latitude is from -90 to 90"),
    ("-90.5", "0", "Latitude is from -90 to 90"),
    ("0", "180.01", "longitude from -180 to 180"),
    ("nan", "1", "Latitude is from -90 to 90"),
    ("inf", "1", "Latitude is from -90 to 90"),
    ("54.97", "", "Give both"),
    ("", "-1.6", "Give both"),
    ("north", "-1.6", "Enter the latitude as a number"),
    ("54.9", "1e400", "Latitude is from -90 to 90"),
])
def test_coordinates_out_of_range_are_refused_and_nothing_changes(client, world, login, session, latitude,
                                                                    longitude, words):
    world.member_m.latitude, world.member_m.longitude = 51.5, -0.12
    world.member_m.bio = "unchanged"
    session.commit()
    login(world.member)
    response = client.post("/profile", data={"latitude": latitude, "longitude": longitude, "bio": "changed"})
    assert response.status_code == 422
    assert words in response.get_data(as_text=True)
    session.expire_all()
    assert (world.member_m.latitude, world.member_m.longitude, world.member_m.bio) == (51.5, -0.12, "unchanged")


def test_coordinates_from_the_profile_are_what_matching_measures(client, world, login, session):
    from timebank.matching.scoring import haversine_km

    login(world.member)
    client.post("/profile", data={"latitude": "54.9783", "longitude": "-1.6178"})
    session.refresh(world.member_m)
    # Newcastle to Durham is about 24 km; the stored numbers give that distance.
    assert 20 < haversine_km(world.member_m.latitude, world.member_m.longitude, 54.7761, -1.5733) < 26


def test_audit_log_shows_names_and_erased_members_as_erased(client, world, login, session):
    from timebank.community.service import erase_person, suspend_member

    suspend_member(session, world.other_m, actor=world.broker, reason="test")
    world.organisation.name = "Community Centre"
    session.commit()
    login(world.admin)
    page = client.get("/admin/audit").get_data(as_text=True)
    row = next(r for r in page.split("<tr>") if "member.suspended" in r)
    assert world.broker.display_name in row and world.other.display_name in row
    assert f">{world.broker.id}<" not in row

    erase_person(session, world.other, actor=world.admin, timebank_id=world.timebank.id)
    session.commit()
    page = client.get("/admin/audit").get_data(as_text=True)
    suspended = next(r for r in page.split("<tr>") if "member.suspended" in r)
    erased = next(r for r in page.split("<tr>") if "privacy.erased" in r)
    assert "erased member" in suspended and world.broker.display_name in suspended
    assert "Former member" not in page
    assert world.admin.display_name in erased and "erased member" in erased


def test_reversals_and_report_exports_are_in_the_audit_log(client, world, login, session, api_headers):
    import datetime as dt

    headers = api_headers(world.broker)
    day = dt.date.today().isoformat()
    posted = client.post("/api/v1/transfers", headers=headers, json={
        "idempotency_key": "t-audit", "memo": "Gardening", "effective_date": day, "kind": "exchange",
        "postings": [{"account_id": world.member_m.account_id, "minutes": -60},
                     {"account_id": world.other_m.account_id, "minutes": 60}]})
    assert posted.status_code == 201, posted.get_json()
    reversed_ = client.post(f"/api/v1/transfers/{posted.get_json()['id']}/reversal", headers=headers,
                            json={"idempotency_key": "r-audit", "reason": "typo"})
    assert reversed_.status_code == 201
    login(world.commissioner)
    download = client.get("/reports/download.csv", query_string={"timebank": "testbank"})
    assert download.status_code == 200
    client.post("/logout")
    login(world.admin)
    page = client.get("/admin/audit").get_data(as_text=True)
    reversal_row = next(r for r in page.split("<tr>") if "ledger.reversed" in r)
    export_row = next(r for r in page.split("<tr>") if "impact.exported" in r)
    assert world.broker.display_name in reversal_row and f"transfer {posted.get_json()['id']}" in reversal_row
    assert world.commissioner.display_name in export_row
