"""Pure scoring functions: features in [0, 1], visible weights, reasons in words.

Nothing here touches the database, so the formulas can be read and tested alone.
"""
from __future__ import annotations

import functools
import math
import re

import numpy as np

DEFAULT_WEIGHTS = {
    "category": 3.0,      # exact skill 1.0, broader or narrower category less
    "text": 1.0,          # word overlap between the request and the volunteer's offers and bio
    "distance": 2.0,      # 1 next door, 0 at the time bank's radius
    "availability": 1.5,  # share of the request's slots the volunteer is free for
    "reliability": 1.5,   # completed / proposed with a Beta(2, 1) prior
    "reciprocity": 1.0,   # favour people with a low or negative balance
    "waiting": 1.0,       # how long the request has waited (and its urgency)
    "load": 1.0,          # convex penalty on open commitments
}
WEIGHT_LABELS = {
    "category": "Category fit", "text": "Text similarity", "distance": "Distance", "availability": "Availability",
    "reliability": "Reliability", "reciprocity": "Reciprocity", "waiting": "Waiting time", "load": "Load penalty",
}
SAFETY_LEVELS = ("none", "basic", "standard", "enhanced")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
PARTS = ("mornings", "afternoons", "evenings")
RELIABILITY_PRIOR = (2.0, 1.0)  # alpha (completed), beta (not completed): new members start at 2/3
ALL_SLOTS = (1 << 21) - 1


def weights_for(settings: dict | None) -> dict[str, float]:
    """The time bank's weights: defaults overridden by settings["matching_weights"]."""
    weights = dict(DEFAULT_WEIGHTS)
    custom = (settings or {}).get("matching_weights") or {}
    for key, value in custom.items():
        if key in weights:
            try:
                weights[key] = max(0.0, float(value))
            except (TypeError, ValueError):
                continue
    return weights


def levels_at_least(level: str) -> tuple[str, ...]:
    index = SAFETY_LEVELS.index(level) if level in SAFETY_LEVELS else 0
    return SAFETY_LEVELS[index:]


def age_lower_bound(age_band: str | None) -> int | None:
    """'25-34' -> 25, '65+' -> 65, 'under 18' -> 0; None when unknown."""
    if not age_band:
        return None
    if age_band.strip().lower().startswith("under"):
        return 0
    match = re.match(r"\s*(\d+)", age_band)
    return int(match.group(1)) if match else None


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6371.0088
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(min(1.0, math.sqrt(a)))


def haversine_km_array(lat1, lon1, lat2, lon2) -> np.ndarray:
    """haversine_km on numpy arrays (the same formula, for batch plans and ranked candidates)."""
    r = 6371.0088
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2 - lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * r * np.arcsin(np.minimum(1.0, np.sqrt(a)))


def bounding_box(lat: float, lon: float, radius_km: float) -> tuple[float, float, float, float]:
    """(min_lat, max_lat, min_lon, max_lon) enclosing the circle; a cheap SQL pre-filter."""
    dlat = radius_km / 111.0
    dlon = radius_km / (111.0 * max(0.01, math.cos(math.radians(lat))))
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon


def popcount(x: int) -> int:
    return bin(x & ALL_SLOTS).count("1")


def availability_overlap(request_slots: int, member_slots: int) -> float:
    if not request_slots:
        return 1.0
    return popcount(request_slots & member_slots) / popcount(request_slots)


def availability_overlap_array(request_slots: np.ndarray, member_slots: np.ndarray) -> np.ndarray:
    """availability_overlap per pair, on arrays."""
    wanted = np.bitwise_count(request_slots & ALL_SLOTS).astype(np.int64)
    common = np.bitwise_count(request_slots & member_slots & ALL_SLOTS).astype(np.int64)
    return np.where(request_slots == 0, 1.0, common / np.maximum(wanted, 1))


def slot_words(slots: int, limit: int = 2) -> str:
    words = [f"{DAYS[bit // 3]} {PARTS[bit % 3]}" for bit in range(21) if slots >> bit & 1]
    if not words:
        return ""
    if len(words) > limit:
        return ", ".join(words[:limit]) + f" and {len(words) - limit} more"
    return " and ".join(words)


_WORD = re.compile(r"[a-z0-9]{3,}")
_STOP = {"the", "and", "for", "with", "can", "need", "help", "someone", "who", "you", "our", "are", "have", "will"}


@functools.lru_cache(maxsize=65536)
def tokens(text: str) -> frozenset[str]:
    """The words of a text that count for similarity. Cached per process: the same bios and offers are read for
    every request (a suggestions request on the L demo tokenised about 700 texts)."""
    return frozenset(w for w in _WORD.findall((text or "").lower()) if w not in _STOP)


def text_similarity(a: set[str], b: set[str]) -> float:
    """Overlap coefficient of two word sets."""
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def text_similarity_of_parts(a: frozenset[str], parts) -> tuple[float, set[str]]:
    """text_similarity(a, union of parts) and the shared words, without building the union when it cannot matter.

    A member's words come in parts (their bio, each live offer). Only the request's own words can be shared, so the
    shared words are the union of a & part; the union's size only matters when every part is smaller than a (the
    overlap coefficient divides by the smaller set). Most members share no word with a request: for them no set of
    their own words is built at all."""
    if not a:
        return 0.0, set()
    shared: set[str] = set()
    longest = 0
    for part in parts:
        shared |= a & part
        longest = max(longest, len(part))
    if not shared:
        return 0.0, shared
    size = longest if longest >= len(a) else len(frozenset().union(*parts))
    return len(shared) / min(len(a), size), shared


def text_similarity_array(common: np.ndarray, a_len: np.ndarray, b_len: np.ndarray) -> np.ndarray:
    """text_similarity per pair from the size of the intersection and of each word set."""
    smaller = np.minimum(a_len, b_len)
    return np.where(smaller > 0, common / np.maximum(smaller, 1), 0.0)


def distance_feature(distance_km: float | None, radius_km: float, remote: bool) -> float:
    if remote or distance_km is None:
        return 1.0
    return max(0.0, 1.0 - distance_km / max(radius_km, 0.001))


def distance_feature_array(distance_km: np.ndarray, radius_km: float, remote: np.ndarray) -> np.ndarray:
    """distance_feature per pair; a NaN distance is an unknown one."""
    near = np.maximum(0.0, 1.0 - distance_km / max(radius_km, 0.001))
    return np.where(remote | np.isnan(distance_km), 1.0, near)


def reliability(completed, proposed):
    """Completed over proposed with the prior; numbers or numpy arrays."""
    alpha, beta = RELIABILITY_PRIOR
    return (completed + alpha) / (proposed + alpha + beta)


def reciprocity(balance_minutes: int) -> float:
    """1 for someone 10 hours in debit, 0.5 at zero, 0 for someone 10 hours in credit."""
    return min(1.0, max(0.0, 0.5 - balance_minutes / 1200.0))


def reciprocity_array(balance_minutes: np.ndarray) -> np.ndarray:
    """reciprocity per member, on arrays."""
    return np.minimum(1.0, np.maximum(0.0, 0.5 - balance_minutes / 1200.0))


def waiting(days_waiting: float, urgency: str = "normal") -> float:
    base = min(1.0, max(0.0, days_waiting) / 14.0)
    bonus = {"low": 0.0, "normal": 0.15, "high": 0.4}.get(urgency, 0.0)
    return min(1.0, base + bonus)


def load_cost(commitments: int, weight: float) -> float:
    """Convex: total penalty for carrying n commitments is weight * n^2 / 4."""
    return weight * commitments * commitments / 4.0


def marginal_load(commitments, weight: float):
    """Extra penalty for one more commitment on top of `commitments` (a number or a numpy array); increasing in
    commitments."""
    return load_cost(commitments + 1, weight) - load_cost(commitments, weight)


def base_score(features: dict, weights: dict[str, float]):
    """The weighted sum of the positive features (the load penalty is applied separately); features are numbers,
    or numpy arrays of one value per candidate (summed in the same order, so the same floats)."""
    return sum(weights[k] * features.get(k, 0.0) for k in weights if k != "load")


def reasons(*, category_name: str, fit: str, distance_km: float | None, remote: bool, common_slots: int,
            asked_this_week: int, open_commitments: int, balance_minutes: int, completed: int, proposed: int,
            shared_words: set[str]) -> list[str]:
    """The score's reasons, in words a broker would say."""
    out = []
    out.append({"exact": f"offers {category_name}", "broader": f"offers help in {category_name} generally",
                "narrower": f"offers {category_name}"}.get(fit, f"offers {category_name}"))
    if remote:
        out.append("can be done remotely")
    elif distance_km is not None:
        out.append(f"{distance_km:.1f} km away")
    if common_slots:
        out.append(f"free on {slot_words(common_slots)}")
    out.append("has not been asked this week" if asked_this_week == 0 else
               f"asked {asked_this_week} time{'s' if asked_this_week != 1 else ''} this week")
    if open_commitments:
        out.append(f"{open_commitments} open commitment{'s' if open_commitments != 1 else ''}")
    if proposed == 0:
        out.append("new to matching")
    else:
        out.append(f"completed {completed} of {proposed} past matches")
    if balance_minutes < 0:
        out.append(f"needs to earn hours ({-balance_minutes / 60:.1f} h in debit)")
    if shared_words:
        out.append("mentions " + ", ".join(sorted(shared_words)[:3]))
    return out
