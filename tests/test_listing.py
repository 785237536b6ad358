"""A list cut short for reading says how many more there are (pathways/listing.py)."""

from pathways.listing import listed


def _more(count: int) -> str:
    return f"and {count} more"


def test_a_list_within_the_limit_is_shown_whole() -> None:
    assert listed(["a", "b"], 2, _more) == ["a", "b"]
    assert listed([], 2, _more) == []


def test_a_longer_list_shows_the_first_and_counts_the_rest() -> None:
    assert listed(["a", "b", "c", "d"], 2, _more) == ["a", "b", "and 2 more"]
    assert listed(list(range(201)), 200, lambda count: -count)[-2:] == [199, -1]
