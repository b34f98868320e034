"""Who may do what: a matrix of actor x action on one pending and one disputed exchange."""
import datetime as dt

import pytest

from timebank.exchanges import policy, service

ACTORS = ("logger", "other_side", "outsider", "broker", "commissioner", "rep", "suspended_party")
EXPECTED = {
    #                  confirm dispute cancel resolve record credit grant donate retag
    "logger":          (False, False, True, False, False, False, False, True, False),
    "other_side":      (True, True, False, False, False, False, False, True, False),
    "outsider":        (False, False, False, False, False, False, False, True, False),
    "broker":          (False, False, False, True, True, True, True, True, True),
    "commissioner":    (False, False, False, False, False, False, False, False, False),
    "rep":             (False, False, False, False, False, True, False, True, False),
    "suspended_party": (False, False, False, False, False, False, False, False, False),
}


@pytest.fixture
def world(session, make_person, organisation, rep):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    exchange = service.log_exchange(session, user=alice_u, provider_id=alice.id, recipient_id=bob.id, minutes=60,
                                    happened_on=dt.date.today())
    susp_u, susp = make_person()
    pending_with_suspended = service.log_exchange(session, user=alice_u, provider_id=alice.id,
                                                  recipient_id=susp.id, minutes=30, happened_on=dt.date.today())
    susp.status = "suspended"
    session.flush()
    users = {"logger": alice_u, "other_side": bob_u, "outsider": make_person()[0], "broker": make_person("broker")[0],
             "commissioner": make_person("commissioner")[0], "rep": rep[0], "suspended_party": susp_u}
    return users, exchange, pending_with_suspended, organisation


@pytest.mark.parametrize("actor", ACTORS)
def test_permission_matrix(session, world, actor, timebank):
    users, exchange, with_suspended, organisation = world
    user = users[actor]
    target = with_suspended if actor == "suspended_party" else exchange
    got = (policy.can_confirm(session, user, target), policy.can_dispute(session, user, target),
           policy.can_cancel(session, user, target), policy.can_resolve(session, user, timebank.id),
           policy.can_record(session, user, timebank.id), policy.can_credit(session, user, organisation),
           policy.can_grant(session, user, timebank.id), policy.can_donate(session, user, timebank.id),
           policy.can_retag(session, user, timebank.id))
    assert got == EXPECTED[actor]


def test_nobody_confirms_a_settled_exchange(session, world):
    users, exchange, _, _ = world
    service.confirm_exchange(session, exchange.id, user=users["other_side"])
    assert not any(policy.can_confirm(session, u, exchange) or policy.can_cancel(session, u, exchange)
                   for u in users.values())
