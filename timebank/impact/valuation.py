"""What the hours are worth: a range of rates the time bank configures, and value per unit of funding.

Rates live in TimeBank.settings["impact"]["rates"], a list of
{"level": "low"|"central"|"high", "rate": "10.42", "currency": "GBP", "source": "...", "year": 2024};
funding in TimeBank.settings["impact"]["funding"], a list of
{"from": "2025-01-01", "to": "2025-12-31", "amount": "50000", "currency": "GBP", "source": "..."}.
Money is Decimal, rounded to whole pence at the end.
"""
from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

LEVELS = ("low", "central", "high")
PENNY = Decimal("0.01")


def _money(value: Decimal) -> str:
    return str(value.quantize(PENNY, rounding=ROUND_HALF_UP))


def rates_of(settings: dict | None) -> list[dict]:
    rates = ((settings or {}).get("impact") or {}).get("rates") or []
    order = {level: i for i, level in enumerate(LEVELS)}
    return sorted((r for r in rates if r.get("level") in order), key=lambda r: order[r["level"]])


def funding_in_period(settings: dict | None, start: dt.date, end: dt.date) -> Decimal:
    """Funding pro-rated by the days its own period overlaps the report period."""
    total = Decimal(0)
    for grant in ((settings or {}).get("impact") or {}).get("funding") or []:
        g0, g1 = dt.date.fromisoformat(grant["from"]), dt.date.fromisoformat(grant["to"])
        overlap = (min(g1, end) - max(g0, start)).days + 1
        if overlap <= 0 or g1 < g0:
            continue
        total += Decimal(str(grant["amount"])) * overlap / ((g1 - g0).days + 1)
    return total


def value_of(minutes_by_timebank: dict[int, int], settings_by_timebank: dict[int, dict],
             start: dt.date, end: dt.date) -> dict:
    """Value range for the hours delivered; each level with its rate, source and year."""
    levels: dict[str, dict] = {}
    funding = Decimal(0)
    for timebank_id, settings in settings_by_timebank.items():
        minutes = minutes_by_timebank.get(timebank_id, 0)
        funding += funding_in_period(settings, start, end)
        for rate in rates_of(settings):
            entry = levels.setdefault(rate["level"], {"level": rate["level"], "value": Decimal(0), "rates": []})
            entry["value"] += Decimal(str(rate["rate"])) * minutes / 60
            label = {"rate": str(rate["rate"]), "currency": rate.get("currency", "GBP"),
                     "source": rate.get("source", ""), "year": rate.get("year")}
            if label not in entry["rates"]:
                entry["rates"].append(label)
    rows = []
    for level in LEVELS:
        if level not in levels:
            continue
        entry = levels[level]
        first = entry["rates"][0]
        rows.append({
            "level": level, "value": _money(entry["value"]), "currency": first["currency"],
            "rate_per_hour": first["rate"] if len(entry["rates"]) == 1 else "varies by time bank",
            "source": "; ".join(r["source"] for r in entry["rates"]),
            "year": first["year"] if len(entry["rates"]) == 1 else None,
            "value_per_unit_of_funding": (str((entry["value"] / funding).quantize(PENNY, rounding=ROUND_HALF_UP))
                                          if funding > 0 else None),
        })
    return {"configured": bool(rows), "levels": rows, "funding": _money(funding) if funding > 0 else None,
            "note": None if rows else "No valuation rates are configured for this time bank."}
