"""Tests for the synthetic clickstream the example recommender learns from."""

from collections import Counter

from {{ cookiecutter.package_name }}.clickstream import (
    build_catalog,
    generate_sessions,
    sample_feature_events,
)


def test_the_same_seed_always_yields_the_same_sessions() -> None:
    """Training must be reproducible, so the data it learns from must be."""
    assert list(generate_sessions(200, seed=5)) == list(generate_sessions(200, seed=5))


def test_different_seeds_yield_different_sessions() -> None:
    """A seed that changed nothing would hide a bug in how randomness is threaded through."""
    assert list(generate_sessions(200, seed=5)) != list(generate_sessions(200, seed=6))


def test_every_catalog_item_has_one_id_and_one_category() -> None:
    """Recommendations and sample events name items by id; ids must be unique and known."""
    catalog = build_catalog()
    ids = [item.item_id for item in catalog.items]
    assert len(ids) == len(set(ids)) >= 300
    assert sorted(ids) == sorted(i.item_id for group in catalog.by_category.values() for i in group)


def test_sessions_view_only_catalog_items_and_never_the_same_item_twice_in_a_row() -> None:
    """A reload is not a co-visit; counting it would teach the model an item resembles itself."""
    known = {item.item_id for item in build_catalog().items}
    for session in generate_sessions(500, seed=1):
        assert len(session.item_ids) >= 2
        assert set(session.item_ids) <= known
        assert all(a != b for a, b in zip(session.item_ids, session.item_ids[1:], strict=False))


def test_most_consecutive_views_stay_within_one_category() -> None:
    """Co-visitation only carries signal if shoppers browse related items together."""
    category = {item.item_id: item.category for item in build_catalog().items}
    steps = Counter(
        category[a] == category[b]
        for session in generate_sessions(2000, seed=2)
        for a, b in zip(session.item_ids, session.item_ids[1:], strict=False)
    )
    assert steps[True] / steps.total() > 0.6


def test_bought_together_items_are_often_viewed_one_after_the_other() -> None:
    """Cross-category pairs (phone and earbuds) are what makes recommendations surprising."""
    complements = build_catalog().complements
    follows = sum(
        complements.get(a) == b
        for session in generate_sessions(5000, seed=3)
        for a, b in zip(session.item_ids, session.item_ids[1:], strict=False)
    )
    assert follows > 500


def test_sample_feature_events_are_valid_model_input_records() -> None:
    """The local pipeline sends these to the endpoint; a bad one would land in the DLQ."""
    known = {item.item_id for item in build_catalog().items}
    events = sample_feature_events(50, seed=4)
    assert len(events) == 50
    for event in events:
        assert set(event) == {"user_id", "recent_items", "k"}
        assert str(event["user_id"]).startswith("u-")
        assert 1 <= len(event["recent_items"]) <= 5
        assert set(event["recent_items"]) <= known
        assert event["k"] == 5


def test_sample_feature_events_are_the_same_for_the_same_seed() -> None:
    """Local runs are compared with each other; their input must not drift."""
    assert sample_feature_events(20, seed=9) == sample_feature_events(20, seed=9)
