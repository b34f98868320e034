"""Small-number suppression rules, pure."""
from hypothesis import given
from hypothesis import strategies as st

from timebank.impact.suppression import display, suppress_counts, suppress_total


def test_counts_of_five_or_more_are_shown():
    assert suppress_counts({"a": 5, "b": 12, "c": 0}) == {"a": 5, "b": 12, "c": 0}


def test_single_small_cell_forces_a_second_one():
    # Hiding only "b" would let total - 5 - 9 reveal it: the smallest other cell is hidden too.
    assert suppress_counts({"a": 9, "b": 2, "c": 5}) == {"a": 9, "b": None, "c": None}


def test_hidden_cells_adding_to_fewer_than_five_hide_more():
    assert suppress_counts({"a": 1, "b": 1, "c": 6, "d": 20}) == {"a": None, "b": None, "c": None, "d": 20}


def test_two_small_cells_adding_to_five_or_more_are_enough():
    assert suppress_counts({"a": 3, "b": 4, "c": 30}) == {"a": None, "b": None, "c": 30}


def test_display_and_total():
    assert display(None) == "fewer than 5" and display(7) == "7"
    assert suppress_total(3) is None and suppress_total(0) == 0 and suppress_total(5) == 5


@given(st.dictionaries(st.text(min_size=1, max_size=3), st.integers(min_value=0, max_value=40), max_size=8))
def test_no_small_count_is_ever_shown_nor_recoverable(counts):
    shown = suppress_counts(counts)
    assert set(shown) == set(counts)
    hidden = [label for label, value in shown.items() if value is None]
    for label, value in shown.items():
        assert value is None or not (0 < value < 5)
        assert value is None or value == counts[label]
    if hidden and any(value for value in shown.values() if value):
        # The total minus the visible cells gives only the sum of the hidden ones: never a lone small cell.
        assert len(hidden) >= 2 or sum(counts.values()) == counts[hidden[0]]
        assert len(hidden) >= 2 and sum(counts[h] for h in hidden) >= 5 or len(hidden) == len(
            [v for v in counts.values() if v > 0])
