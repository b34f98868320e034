"""A statement as CSV text (used by the API and the statement page)."""
from __future__ import annotations

import csv
import io

from timebank.ledger.queries import Statement


def statement_csv(st: Statement) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["date", "transfer_id", "kind", "memo", "counterparty", "minutes", "running_minutes"])
    writer.writerow([st.date_from.isoformat(), "", "opening", "Opening balance", "", "", st.opening_minutes])
    for line in st.lines:
        # Cells that a spreadsheet would run as a formula are quoted with a leading apostrophe.
        memo = "'" + line.memo if line.memo[:1] in ("=", "+", "-", "@") else line.memo
        party = "'" + line.counterparty if line.counterparty[:1] in ("=", "+", "-", "@") else line.counterparty
        writer.writerow([line.date.isoformat(), line.transfer_id, line.kind, memo, party, line.minutes,
                         line.running_minutes])
    writer.writerow([st.date_to.isoformat(), "", "closing", "Closing balance", "", "", st.closing_minutes])
    return out.getvalue()
