"""Small-number suppression for breakdowns of people. Pure functions, no database.

Primary: a count of 1 to 4 is shown as "fewer than 5". Secondary: when the
suppressed cells could be recovered from the published total (only one cell
hidden, or the hidden cells adding up to fewer than 5), the smallest visible
non-zero cells are hidden too until they cannot.
"""
from __future__ import annotations

THRESHOLD = 5
SUPPRESSED_TEXT = "fewer than 5"


def is_small(count: int, threshold: int = THRESHOLD) -> bool:
    return 0 < count < threshold


def suppress_counts(counts: dict[str, int], threshold: int = THRESHOLD) -> dict[str, int | None]:
    """Return the counts with hidden cells as None (primary and secondary suppression)."""
    hidden = {label for label, count in counts.items() if is_small(count, threshold)}

    def recoverable() -> bool:
        if not hidden:
            return False
        return len(hidden) == 1 or sum(counts[label] for label in hidden) < threshold

    while recoverable():
        visible = sorted((count, label) for label, count in counts.items() if label not in hidden and count > 0)
        if not visible:
            break
        hidden.add(visible[0][1])
    return {label: (None if label in hidden else count) for label, count in counts.items()}


def display(count: int | None) -> str:
    return SUPPRESSED_TEXT if count is None else str(count)


def suppress_total(total: int, threshold: int = THRESHOLD) -> int | None:
    return None if is_small(total, threshold) else total
