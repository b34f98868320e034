"""Group activity CSV uploads (broker desk and organisation page) that are malformed, huge, empty, binary or in
the wrong encoding: a 4xx, a message in plain words, and nothing written (every table's row count unchanged)."""
from __future__ import annotations

import datetime as dt
import io

import pytest
from sqlalchemy import func, select

from timebank.extensions import db

GOOD = "member,hours\nvol1@csv.test,2\nvol2@csv.test,1:30\n"

BAD_FILES = [
    ("empty file", b"", "The file is empty"),
    ("only blank lines", b"\n\n  \n", "The file is empty"),
    ("UTF-16 (Excel 'Unicode text')", GOOD.encode("utf-16"), "not in UTF-8"),
    ("Latin-1 with bytes invalid in UTF-8", "member,hours\nzoë@csv.test,2\n".encode("latin-1") + b"\xff\xfe",
     "not in UTF-8"),
    ("binary (a PNG)", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "not a CSV text file"),
    ("a spreadsheet (xlsx zip)", b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 200, "not a CSV text file"),
    ("too big", b"member,hours\n" + b"vol1@csv.test,1\n" * 20_000, "too big"),
    ("one field longer than the csv module allows", b"member,hours\n" + b"x" * 150_000 + b",1\n",
     "could not be read as CSV"),
    ("unterminated quote", b'member,hours\n"vol1@csv.test,2\nvol2@csv.test,1\n', "Unknown member"),
    ("wrong columns", b"name;hours;extra\nVol One;2;x\n", "Unknown member"),
    ("hours that are not numbers", b"member,hours\nvol1@csv.test,two\nvol2@csv.test,-1\n", "is not a number"),
    ("unknown member and duplicates", b"member,hours\nghost@csv.test,1\nvol1@csv.test,1\nvol1@csv.test,1\n",
     "listed twice"),
]


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch):
    from argon2 import PasswordHasher

    from timebank.community import auth

    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))


@pytest.fixture
def desk(session):
    from timebank.community.service import add_membership, create_organisation, create_timebank, create_user

    timebank = create_timebank(session, slug="csvbank", name="CSV Bank")
    people = {}
    for name, role in (("broker", "broker"), ("rep", "member"), ("vol1", "member"), ("vol2", "member")):
        user = create_user(session, email=f"{name}@csv.test", display_name=name.title(), password="pw-123456789")
        add_membership(session, user=user, timebank=timebank, role=role)
        people[name] = user
    organisation = create_organisation(session, timebank=timebank, name="CSV Library", kind="council")
    organisation.representatives.append(people["rep"])
    session.commit()
    return {"people": people, "organisation_id": organisation.id}


def _counts(session):
    session.expire_all()
    names = [t.name for t in db.metadata.sorted_tables]
    row = session.execute(select(*[select(func.count()).select_from(t).scalar_subquery()
                                   for t in db.metadata.sorted_tables])).one()
    return dict(zip(names, row))


def _post(client, desk, where, data: bytes, filename="participants.csv"):
    form = {"task": "activity", "title": "Litter pick", "date": dt.date.today().isoformat(), "step": "record",
            "csv_file": (io.BytesIO(data), filename)}
    if where == "broker desk":
        url = "/exchanges/broker"
        form["organisation_id"] = str(desk["organisation_id"])
    else:
        url = f"/exchanges/organisations/{desk['organisation_id']}"
    return client.post(url, data=form, content_type="multipart/form-data")


def _login(client, user):
    assert client.post("/login", data={"email": user.email, "password": "pw-123456789"}).status_code == 302


@pytest.mark.parametrize("where,who", [("broker desk", "broker"), ("organisation page", "rep")])
def test_a_good_upload_records_the_activity(client, session, desk, where, who):
    """The baseline: the same form with a good file does write (so the refusals below are about the file)."""
    _login(client, desk["people"][who])
    before = _counts(session)
    response = _post(client, desk, where, GOOD.encode("utf-8-sig"))
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    assert _counts(session)["group_activity"] == before["group_activity"] + 1


@pytest.mark.parametrize("where,who", [("broker desk", "broker"), ("organisation page", "rep")])
@pytest.mark.parametrize("what,data,words", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_bad_upload_is_refused_in_words_and_writes_nothing(client, session, desk, where, who, what, data, words):
    _login(client, desk["people"][who])
    before = _counts(session)
    response = _post(client, desk, where, data)
    text = response.get_data(as_text=True)
    assert 400 <= response.status_code < 500, (what, response.status_code)
    assert words in text, (what, text[text.find("<main"):][:1500])
    assert "Traceback" not in text
    assert _counts(session) == before, f"{what}: a refused upload wrote rows"


def test_a_pasted_list_too_long_for_the_csv_reader_is_refused_not_500(client, session, desk):
    _login(client, desk["people"]["broker"])
    before = _counts(session)
    response = client.post("/exchanges/broker", data={
        "task": "activity", "organisation_id": str(desk["organisation_id"]), "title": "Litter pick",
        "date": dt.date.today().isoformat(), "step": "record", "csv": "member,hours\n" + "y" * 150_000 + ",1\n"})
    assert response.status_code == 422 and "could not be read as CSV" in response.get_data(as_text=True)
    assert _counts(session) == before
