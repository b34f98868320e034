import datetime as dt
import re
import subprocess

import pytest
import sqlalchemy as sa

from timebank.ledger.queries import balance_of
from timebank.ledger.service import post_transfer, reverse_transfer

D = dt.date(2026, 11, 1)


@pytest.fixture
def history(session, timebank, accounts):
    a = accounts
    post_transfer(session, timebank_id=timebank.id, kind="opening", effective_date=D,
                  postings=[(a["issuance"].id, -1000), (a["m1"].id, 1000)], memo="Opening; with \"quotes\"")
    t = post_transfer(session, timebank_id=timebank.id, kind="exchange", effective_date=D + dt.timedelta(days=1),
                      postings=[(a["m1"].id, -20), (a["m2"].id, 20)], memo="Twenty minutes of help")
    post_transfer(session, timebank_id=timebank.id, kind="group_activity", effective_date=D + dt.timedelta(days=2),
                  postings=[(a["m1"].id, -100), (a["m2"].id, 40), (a["m3"].id, 40), (a["capped"].id, 20)])
    reverse_transfer(session, t.id, reason="wrong member", effective_date=D + dt.timedelta(days=3))
    post_transfer(session, timebank_id=timebank.id, kind="exchange", effective_date=D + dt.timedelta(days=3),
                  postings=[(a["m3"].id, -7), (a["m2"].id, 7)], memo="Seven")
    session.commit()
    return {k: v.id for k, v in a.items()}


def test_verify_passes_on_a_sound_ledger(runner, history):
    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output


def _disable_append_only(session):
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("ALTER TABLE posting DISABLE TRIGGER USER"))
        session.execute(sa.text("ALTER TABLE account DISABLE TRIGGER USER"))
    else:
        session.execute(sa.text("DROP TRIGGER posting_no_update"))


def test_verify_names_first_broken_link_after_tampering_with_triggers_off(runner, session, history):
    ids = history
    # Someone with database access moves 5 minutes between two postings of one transfer and fixes the balances.
    rows = session.execute(sa.text("SELECT id, account_id FROM posting WHERE account_id IN (:a, :b) ORDER BY id"),
                           {"a": ids["m2"], "b": ids["m3"]}).all()
    p_m2 = [r.id for r in rows if r.account_id == ids["m2"]][1]  # the group activity leg, not the first posting
    p_m3 = [r.id for r in rows if r.account_id == ids["m3"]][0]
    _disable_append_only(session)
    session.execute(sa.text("UPDATE posting SET minutes = minutes + 5 WHERE id = :p"), {"p": p_m2})
    session.execute(sa.text("UPDATE posting SET minutes = minutes - 5 WHERE id = :p"), {"p": p_m3})
    session.execute(sa.text("UPDATE account SET balance_minutes = balance_minutes + 5 WHERE id = :a"), {"a": ids["m2"]})
    session.execute(sa.text("UPDATE account SET balance_minutes = balance_minutes - 5 WHERE id = :a"), {"a": ids["m3"]})
    session.commit()
    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code == 1
    assert f"hash chain of account {ids['m2']} (Member 2) broken at posting {p_m2}" in result.output
    assert f"broken at posting {p_m3}" in result.output
    assert "stored balance" not in result.output  # the balances were forged consistently: only the chain shows it


def test_verify_reports_balance_drift(runner, session, history):
    _disable_append_only(session)
    session.execute(sa.text("UPDATE account SET balance_minutes = balance_minutes + 1 WHERE id = :a"),
                    {"a": history["m1"]})
    session.commit()
    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code == 1
    assert re.search(r"Member 1\): stored balance \d+ but postings sum to", result.output)


def _journal(runner, fmt, tmp_path):
    path = tmp_path / f"export.{fmt}"
    result = runner.invoke(args=["ledger", "export", "--format", fmt, "--timebank", "testbank", "--output", str(path)])
    assert result.exit_code == 0, result.output
    return path


def test_hledger_accepts_export_and_balances_match(runner, session, history, tmp_path):
    path = _journal(runner, "hledger", tmp_path)
    subprocess.run(["hledger", "-f", str(path), "check"], check=True, capture_output=True)
    out = subprocess.run(["hledger", "-f", str(path), "bal", "--flat", "--no-total", "-O", "csv"], check=True,
                         capture_output=True, text=True).stdout
    got = {}
    for line in out.strip().splitlines()[1:]:
        name, amount = [x.strip('"') for x in line.split('","')]
        got[int(name.rsplit(":A", 1)[1])] = int(amount.replace(" MIN", "") or 0) if amount != "0" else 0
    for key, aid in history.items():
        assert got.get(aid, 0) == balance_of(session, aid), key
    assert "chain-digest:" in path.read_text()


def test_hledger_refuses_a_tampered_export(runner, history, tmp_path):
    path = _journal(runner, "hledger", tmp_path)
    text = path.read_text().replace("-7 MIN", "-8 MIN").replace("    7 MIN", "    8 MIN")
    path.write_text(text)
    assert subprocess.run(["hledger", "-f", str(path), "check"], capture_output=True).returncode != 0


def test_ledger_cli_accepts_export_and_balances_match(runner, session, history, tmp_path):
    path = _journal(runner, "ledger", tmp_path)
    out = subprocess.run(["ledger", "-f", str(path), "bal", "--flat", "--no-total", "--balance-format",
                          "%(account)|%(quantity(scrub(display_total)))\n"], check=True, capture_output=True,
                         text=True).stdout
    got = {int(n.rsplit(":A", 1)[1]): int(q) for n, q in (line.split("|") for line in out.strip().splitlines())}
    for key, aid in history.items():
        assert got.get(aid, 0) == balance_of(session, aid), key


def test_bean_check_accepts_export(runner, history, tmp_path):
    path = _journal(runner, "beancount", tmp_path)
    result = subprocess.run(["bean-check", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    path.write_text(path.read_text().replace("    7 MIN", "    8 MIN").replace("-7 MIN", "-8 MIN"))
    assert subprocess.run(["bean-check", str(path)], capture_output=True).returncode != 0
