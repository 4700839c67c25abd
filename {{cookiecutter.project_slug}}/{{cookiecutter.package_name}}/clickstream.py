"""A seeded synthetic e-commerce clickstream: the catalog, the shoppers and their sessions.

The example recommender learns from these sessions, and the local pipeline sends model input
records drawn from them, so `make local` shows recommendations that make sense: a shopper who
looked at tents gets sleeping bags, not baby food.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

# The catalog is the same world for every seed: any seed's sessions and sample events name
# items that a model trained with any other seed knows.
CATALOG_SEED = 2026
ITEMS_PER_CATEGORY = 20
CATEGORIES = (
    "running-shoes", "kitchen", "coffee", "fiction", "toys", "garden", "camping", "phones",
    "laptops", "audio", "cameras", "gaming", "fitness", "baby", "pets", "beauty", "office",
    "tools", "bikes", "home-decor",
)  # fmt: skip
COMPLEMENT_PAIRS = 40
USER_COUNT = 2000

# Shopping behaviour: the odds that the next view follows a "bought together" link, or wanders
# off to another category; the rest of the time the shopper browses the current category.
FOLLOW_COMPLEMENT = 0.35
SWITCH_CATEGORY = 0.12
EXPLORE_OUTSIDE_PREFERENCES = 0.15
# Within a category a few items draw most views (a Zipf-like curve), as in real shops.
POPULARITY_EXPONENT = 0.9
_RANK_CUMULATIVE_WEIGHTS = list(
    itertools.accumulate((rank + 1) ** -POPULARITY_EXPONENT for rank in range(ITEMS_PER_CATEGORY))
)


@dataclass(frozen=True)
class Item:
    """One product in the catalog."""

    item_id: str
    category: str


@dataclass(frozen=True)
class Catalog:
    """The products, grouped by category, plus cross-category "bought together" pairs."""

    items: tuple[Item, ...]
    by_category: dict[str, tuple[Item, ...]]
    complements: dict[str, str]


@dataclass(frozen=True)
class Shopper:
    """A user and how strongly they favour a few categories."""

    user_id: str
    favourite_categories: tuple[str, ...]
    weights: tuple[float, ...]


@dataclass(frozen=True)
class Session:
    """The items one shopper viewed in one visit, oldest first."""

    user_id: str
    item_ids: tuple[str, ...]


def build_catalog(seed: int = CATALOG_SEED) -> Catalog:
    """Build the catalog: `i-0000`.. spread over the categories, plus complement pairs."""
    rng = random.Random(seed)
    item_ids = [f"i-{number:04d}" for number in range(len(CATEGORIES) * ITEMS_PER_CATEGORY)]
    rng.shuffle(item_ids)
    by_category = {
        category: tuple(Item(item_id, category) for item_id in sorted(item_ids[index :: len(CATEGORIES)]))
        for index, category in enumerate(CATEGORIES)
    }
    items = tuple(sorted(itertools.chain(*by_category.values()), key=lambda item: item.item_id))
    return Catalog(items, by_category, _complement_pairs(by_category, rng))


def generate_sessions(count: int, seed: int = 7) -> Iterator[Session]:
    """Yield `count` shopping sessions; the same seed always yields the same sessions."""
    catalog = build_catalog()
    rng = random.Random(seed)
    shoppers = _shoppers(catalog, rng)
    for _ in range(count):
        yield _session(rng.choice(shoppers), catalog, rng)


def sample_feature_events(count: int, seed: int = 7) -> list[dict[str, object]]:
    """Return `count` model input records: a shopper's latest views, most recent last."""
    rng = random.Random(seed)
    records: list[dict[str, object]] = []
    for session in generate_sessions(count, seed=seed):
        recent = list(session.item_ids[-rng.randint(1, 5) :])
        records.append({"user_id": session.user_id, "recent_items": recent, "k": 5})
    return records


def _complement_pairs(by_category: dict[str, tuple[Item, ...]], rng: random.Random) -> dict[str, str]:
    """Link items of different categories that shoppers buy together (phone and earbuds)."""
    complements: dict[str, str] = {}
    categories = list(by_category)
    while len(complements) < 2 * COMPLEMENT_PAIRS:
        first, second = rng.sample(categories, 2)
        a = rng.choice(by_category[first]).item_id
        b = rng.choice(by_category[second]).item_id
        if a not in complements and b not in complements:
            complements[a] = b
            complements[b] = a
    return complements


def _shoppers(catalog: Catalog, rng: random.Random) -> list[Shopper]:
    shoppers = []
    for number in range(USER_COUNT):
        favourites = tuple(rng.sample(list(catalog.by_category), rng.randint(1, 3)))
        weights = tuple(rng.uniform(0.5, 1.0) for _ in favourites)
        shoppers.append(Shopper(f"u-{number:04d}", favourites, weights))
    return shoppers


def _session(shopper: Shopper, catalog: Catalog, rng: random.Random) -> Session:
    category = _pick_category(shopper, catalog, rng)
    views: list[str] = []
    # Most visits are short; a few shoppers browse for a while.
    length = min(2 + int(rng.expovariate(1 / 4)), 20)
    while len(views) < length:
        previous = views[-1] if views else None
        complement = catalog.complements.get(previous or "")
        if complement and complement not in views and rng.random() < FOLLOW_COMPLEMENT:
            views.append(complement)
            continue
        if rng.random() < SWITCH_CATEGORY:
            category = _pick_category(shopper, catalog, rng)
        item_id = _popular_item(catalog.by_category[category], rng)
        if item_id != previous:
            views.append(item_id)
    return Session(shopper.user_id, tuple(views))


def _pick_category(shopper: Shopper, catalog: Catalog, rng: random.Random) -> str:
    if rng.random() < EXPLORE_OUTSIDE_PREFERENCES:
        return rng.choice(list(catalog.by_category))
    return rng.choices(shopper.favourite_categories, weights=shopper.weights)[0]


def _popular_item(items: tuple[Item, ...], rng: random.Random) -> str:
    return rng.choices(items, cum_weights=_RANK_CUMULATIVE_WEIGHTS)[0].item_id
