"""Brokers keep the category list: add, rename, retire, restore; on the page and through the API."""
from __future__ import annotations

from sqlalchemy import func, select

from timebank.community.models import AuditEvent, Category


def _category(session, timebank, name):
    return session.scalar(select(Category).where(Category.timebank_id == timebank.id, Category.name == name))


def _count(session, model):
    return session.scalar(select(func.count()).select_from(model))


def test_broker_adds_renames_retires_and_restores_on_the_page(client, world, login, session):
    login(world.broker)
    page = client.get("/categories")
    assert page.status_code == 200 and "Gardening" in page.get_data(as_text=True)
    home = _category(session, world.timebank, "Home & garden")

    added = client.post("/categories", data={"action": "create", "name": "  Dog   walking ", "parent_id": home.id},
                        follow_redirects=True)
    assert added.status_code == 200 and "Added the category Dog walking" in added.get_data(as_text=True)
    dog = _category(session, world.timebank, "Dog walking")
    assert dog.parent_id == home.id and dog.default_outcome_area == home.default_outcome_area

    renamed = client.post("/categories", data={"action": "rename", "category_id": dog.id, "name": "Pet care"},
                          follow_redirects=True)
    assert "Renamed Dog walking to Pet care" in renamed.get_data(as_text=True)
    session.refresh(dog)
    assert dog.name == "Pet care"

    retired = client.post("/categories", data={"action": "retire", "category_id": dog.id}, follow_redirects=True)
    assert "Retired Pet care" in retired.get_data(as_text=True)
    session.refresh(dog)
    assert dog.is_retired
    restored = client.post("/categories", data={"action": "restore", "category_id": dog.id}, follow_redirects=True)
    assert "Pet care is in use again" in restored.get_data(as_text=True)
    session.refresh(dog)
    assert not dog.is_retired
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.target_type == "category",
                                                              AuditEvent.target_id == dog.id)
                              .order_by(AuditEvent.id)).all()
    assert actions == ["category.created", "category.renamed", "category.retired", "category.restored"]


def test_bad_category_input_is_refused_in_words_and_changes_nothing(client, world, login, session):
    login(world.admin)
    gardening = _category(session, world.timebank, "Gardening")
    before = _count(session, Category)
    cases = [
        ({"action": "create", "name": "   "}, 422, "Give the category a name"),
        ({"action": "create", "name": "x" * 101}, 422, "at most 100 characters"),
        ({"action": "create", "name": "gardening", "parent_id": gardening.parent_id}, 409, "already a category"),
        ({"action": "create", "name": "Hedges", "parent_id": gardening.id}, 422, "under a top-level category"),
        ({"action": "create", "name": "Hedges", "parent_id": "abc"}, 422, "whole number"),
        ({"action": "create", "name": "Hedges", "parent_id": 10**30}, 404, "no such category"),
        ({"action": "rename", "category_id": gardening.id, "name": "Cleaning"}, 409, "already a category"),
        ({"action": "rename", "category_id": 999999, "name": "Anything"}, 404, "no such category"),
        ({"action": "explode", "category_id": gardening.id}, 422, "Choose what to do"),
        ({"action": "restore", "category_id": gardening.id}, 409, "in use already"),
    ]
    for data, status, words in cases:
        response = client.post("/categories", data=data)
        assert response.status_code == status, (data, response.status_code)
        assert words in response.get_data(as_text=True), data
    assert _count(session, Category) == before
    session.refresh(gardening)
    assert gardening.name == "Gardening" and not gardening.is_retired


def test_a_category_of_another_time_bank_cannot_be_touched(client, world, login, session):
    elsewhere = _category(session, world.elsewhere_tb, "Gardening")
    login(world.broker)
    response = client.post("/categories", data={"action": "retire", "category_id": elsewhere.id})
    assert response.status_code == 404
    session.refresh(elsewhere)
    assert not elsewhere.is_retired


def test_retiring_a_parent_retires_its_children_and_restoring_needs_the_parent_first(client, world, login,
                                                                                         session):
    login(world.broker)
    learning = _category(session, world.timebank, "Learning")
    tutoring = _category(session, world.timebank, "Tutoring")
    client.post("/categories", data={"action": "retire", "category_id": learning.id})
    session.refresh(tutoring)
    assert tutoring.is_retired
    refused = client.post("/categories", data={"action": "restore", "category_id": tutoring.id})
    assert refused.status_code == 409 and "Restore &#39;Learning&#39; first" in refused.get_data(as_text=True)
    no_child = client.post("/categories", data={"action": "create", "name": "Maths", "parent_id": learning.id})
    assert no_child.status_code == 409


def test_a_retired_category_is_not_offered_for_new_skills_or_listings_but_kept_where_used(
        client, world, login, session, api_headers):
    from timebank.community.service import retire_category
    from timebank.matching.service import create_offer

    gardening = _category(session, world.timebank, "Gardening")
    cleaning = _category(session, world.timebank, "Cleaning")
    world.member_m.skills = [gardening]
    offer = create_offer(session, membership=world.member_m, title="Weeding", category_id=gardening.id)
    retire_category(session, gardening, actor=world.broker)
    retire_category(session, cleaning, actor=world.broker)
    session.commit()

    login(world.member)
    profile = client.get("/profile").get_data(as_text=True)
    assert f'id="skill-{cleaning.id}"' not in profile
    # The member keeps the retired skill they had, and cannot newly choose another retired one.
    saved = client.post("/profile", data={"skill": [str(gardening.id), str(cleaning.id)]})
    assert saved.status_code == 302
    session.refresh(world.member_m)
    assert [c.name for c in world.member_m.skills] == ["Gardening"]
    assert offer.category_id == gardening.id  # the existing offer keeps its category

    refused = client.post("/api/v1/offers", headers=api_headers(world.member, **{"Idempotency-Key": "o1"}),
                          json={"title": "More weeding", "category_id": gardening.id})
    assert refused.status_code == 422 and "no longer used" in str(refused.get_json())
    listed = client.get("/api/v1/categories?timebank=testbank", headers=api_headers(world.member)).get_json()
    assert "Gardening" not in {c["name"] for c in listed}
    with_retired = client.get("/api/v1/categories?timebank=testbank&include_retired=true",
                              headers=api_headers(world.member)).get_json()
    assert next(c for c in with_retired if c["name"] == "Gardening")["retired"] is True


def test_categories_api_create_rename_retire(client, world, api_headers, session):
    headers = api_headers(world.broker)
    home = _category(session, world.timebank, "Home & garden")
    created = client.post("/api/v1/categories", headers={**headers, "Idempotency-Key": "c1"},
                          json={"name": "Bike repair", "parent_id": home.id})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["name"] == "Bike repair" and body["parent_id"] == home.id and body["timebank"] == "testbank"
    assert body["retired"] is False
    retry = client.post("/api/v1/categories", headers={**headers, "Idempotency-Key": "c1"},
                        json={"name": "Bike repair", "parent_id": home.id})
    assert retry.status_code == 201 and retry.get_json()["id"] == body["id"]  # idempotent, not a duplicate
    changed = client.patch(f"/api/v1/categories/{body['id']}", headers={**headers, "Idempotency-Key": "c2"},
                           json={"name": "Bicycle repair", "retired": True})
    assert changed.status_code == 200
    assert changed.get_json()["name"] == "Bicycle repair" and changed.get_json()["retired"] is True
    duplicate = client.post("/api/v1/categories", headers={**headers, "Idempotency-Key": "c3"},
                            json={"name": "bicycle REPAIR", "parent_id": home.id})
    assert duplicate.status_code == 409 and duplicate.get_json()["code"] == "category_exists"
    missing = client.patch("/api/v1/categories/999999", headers={**headers, "Idempotency-Key": "c4"},
                           json={"retired": True})
    assert missing.status_code == 404
