"""Pages: a member browses, posts and answers a match; a broker reads suggestions, plans and sends."""
import re

from timebank.matching import service


def test_member_posts_and_searches_listings(client, session, volunteer, login, category):
    user, _ = volunteer(skills=[])
    login(user)
    page = client.get("/listings/new/offer")
    assert page.status_code == 200
    r = client.post("/listings/new/offer", data={"title": "Bike repairs", "category_id": category("DIY & repairs").id,
                                                 "description": "Punctures and brakes"})
    assert r.status_code == 302
    def results(query):  # the browse-and-search section (your own listings are shown above it too)
        return client.get(f"/listings?q={query}").get_data(as_text=True).split('id="search"')[1]

    assert "Bike repairs" in results("brakes")
    assert "Bike repairs" not in results("knitting")
    bad = client.post("/listings/new/request", data={"title": "", "category_id": "0"})
    assert bad.status_code == 422 and "not valid" in bad.get_data(as_text=True)


def test_broker_workbench_to_member_accept(client, session, timebank, volunteer, requester, make_person, login,
                                           category):
    broker, _ = make_person("broker")
    asker_user, asker = requester()
    helper_user, helper = volunteer(skills=["Gardening"])
    req = service.create_request(session, user=asker_user, timebank=timebank, membership=asker,
                                 title="Dig a vegetable bed", category_id=category("Gardening").id)
    login(broker)
    bench = client.get(f"/matching?request_id={req.id}").get_data(as_text=True)
    assert "Suggestions for “Dig a vegetable bed”" in bench
    assert "offers Gardening" in bench and "Category fit: 3.0" in bench
    r = client.post("/matching/plans", data={"request_ids": [str(req.id)]})
    assert r.status_code == 303
    plan_page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "1 of 1 places filled" in plan_page
    plan_id = re.search(r"/matching/plans/(\d+)", r.headers["Location"]).group(1)
    sent = client.post(f"/matching/plans/{plan_id}/send", follow_redirects=True).get_data(as_text=True)
    assert "Sent 1 proposal." in sent
    client.post("/logout")
    login(helper_user)
    mine = client.get("/listings").get_data(as_text=True)
    assert "Accept “Dig a vegetable bed”" in mine
    [match] = service.queries.matches_for_member(session, helper.id)
    page = client.post(f"/matches/{match.id}/accept", follow_redirects=True).get_data(as_text=True)
    assert "You accepted the match" in page
    assert "Mark “Dig a vegetable bed” done" in client.get("/listings").get_data(as_text=True)


def test_members_cannot_open_the_workbench(client, volunteer, login):
    user, _ = volunteer(skills=[])
    login(user)
    assert client.get("/matching").status_code == 403


def test_representative_posts_an_opportunity_on_the_page(client, session, timebank, volunteer, login, category):
    from timebank.community.service import create_organisation
    from timebank.matching import queries

    rep_user, _ = volunteer(skills=[])
    other_user, _ = volunteer(skills=[])
    org = create_organisation(session, timebank=timebank, name="Park Friends")
    org.representatives.append(rep_user)
    session.commit()
    login(other_user)
    assert "Post a volunteering opportunity" not in client.get("/listings").get_data(as_text=True)
    assert client.get("/listings/new/opportunity").status_code == 403
    client.post("/logout")
    login(rep_user)
    assert "Post a volunteering opportunity" in client.get("/listings").get_data(as_text=True)
    r = client.post("/listings/new/opportunity", data={
        "organisation_id": str(org.id), "title": "Bulb planting day", "category_id": category("Gardening").id,
        "volunteers_needed": "6", "safety_check_level": "basic", "min_age": "16"})
    assert r.status_code == 302, r.get_data(as_text=True)
    [opp] = queries.list_requests(session, timebank.id, opportunities=True)
    assert (opp.organisation_id, opp.volunteers_needed, opp.safety_check_level, opp.min_age) == (
        org.id, 6, "basic", 16)
    assert "Park Friends: 6 volunteers" in client.get("/listings").get_data(as_text=True)
