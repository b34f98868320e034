import datetime as dt

import pytest

from timebank.ledger.service import open_account, system_account

TODAY = dt.date(2026, 11, 1)


@pytest.fixture
def accounts(session, timebank):
    """Issuance plus three member accounts with a -10 hour floor, and one with a 5 hour ceiling."""
    issuance = system_account(session, timebank.id, "issuance")
    made = {"issuance": issuance}
    for i in range(1, 4):
        made[f"m{i}"] = open_account(session, timebank_id=timebank.id, kind="member", name=f"Member {i}",
                                     floor_minutes=-600)
    made["capped"] = open_account(session, timebank_id=timebank.id, kind="member", name="Capped",
                                  floor_minutes=0, ceiling_minutes=300)
    return made
