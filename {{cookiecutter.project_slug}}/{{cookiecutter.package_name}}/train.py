"""Train the example recommender: item-item co-occurrence learned from clickstream sessions.

    python -m {{ cookiecutter.package_name }}.train --out model --sessions 20000 --seed 7

writes `model/cooccurrence.json`, the artifact that `model/code/inference.py` loads. The file
holds no timestamps and is written with sorted keys, so the same seed gives the same bytes and
a retrained model only shows up in a diff when it really changed.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .clickstream import Session, generate_sessions

MODEL_FILE = "cooccurrence.json"
MODEL_FORMAT = "item-cooccurrence/1"
DEFAULT_SESSIONS = 20_000
DEFAULT_SEED = 7
# Two views at most this many clicks apart count as co-visited; further apart, the shopper has
# usually moved on to something else.
WINDOW = 4
# A pair seen once is as likely chance as taste; dropping it also keeps the file small.
MIN_COVISITS = 2
NEIGHBOURS_PER_ITEM = 20
POPULAR_ITEMS = 50
SCORE_DIGITS = 4


@dataclass(frozen=True)
class Cooccurrence:
    """The learned model: each item's closest neighbours, and the best-sellers as a fallback."""

    neighbours: dict[str, list[tuple[str, float]]]
    popular: list[tuple[str, float]]
    sessions: int


@dataclass(frozen=True)
class TrainingSummary:
    """What one training run produced."""

    path: Path
    items: int
    sessions: int
    seconds: float
    size_bytes: int

    def __str__(self) -> str:
        return (
            f"trained {self.path}: {self.items} items from {self.sessions} sessions, "
            f"{self.size_bytes / 1024:.0f} KiB in {self.seconds:.2f} s"
        )


def learn_cooccurrence(sessions: Iterable[Session]) -> Cooccurrence:
    """Count which items shoppers view close together and keep each item's best neighbours.

    An item's neighbours are scored with cosine similarity, covisits(a, b) / sqrt(views(a) *
    views(b)), so a best-seller does not become everyone's neighbour just by being everywhere.
    """
    views: Counter[str] = Counter()
    covisits: Counter[tuple[str, str]] = Counter()
    session_count = 0
    for session in sessions:
        session_count += 1
        items = session.item_ids
        views.update(items)
        for position, item in enumerate(items):
            for other in items[position + 1 : position + 1 + WINDOW]:
                if other != item:
                    covisits[item, other] += 1
                    covisits[other, item] += 1

    candidates: dict[str, list[tuple[float, str]]] = {}
    for (item, other), count in covisits.items():
        if count >= MIN_COVISITS:
            score = count / math.sqrt(views[item] * views[other])
            candidates.setdefault(item, []).append((score, other))

    neighbours = {
        item: [
            (other, round(score, SCORE_DIGITS))
            # Ties break on the item id so the ranking, and the file, never depend on dict order.
            for score, other in sorted(ranked, key=lambda pair: (-pair[0], pair[1]))[:NEIGHBOURS_PER_ITEM]
        ]
        for item, ranked in sorted(candidates.items())
    }
    total_views = sum(views.values())
    popular = [
        (item, round(count / total_views, SCORE_DIGITS))
        for item, count in sorted(views.items(), key=lambda pair: (-pair[1], pair[0]))[:POPULAR_ITEMS]
    ]
    return Cooccurrence(neighbours, popular, session_count)


def train_model(out_dir: Path, sessions: int = DEFAULT_SESSIONS, seed: int = DEFAULT_SEED) -> TrainingSummary:
    """Train on `sessions` synthetic sessions and write `out_dir/cooccurrence.json`."""
    started = time.perf_counter()
    model = learn_cooccurrence(generate_sessions(sessions, seed=seed))
    document = {
        "format": MODEL_FORMAT,
        "training": dict(sessions=model.sessions, seed=seed, window=WINDOW, min_covisits=MIN_COVISITS),
        "neighbours": model.neighbours,
        "popular": model.popular,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MODEL_FILE
    text = json.dumps(document, separators=(",", ":"), sort_keys=True) + "\n"
    path.write_text(text, encoding="utf-8")
    return TrainingSummary(
        path=path,
        items=len(model.neighbours),
        sessions=model.sessions,
        seconds=time.perf_counter() - started,
        size_bytes=len(text.encode("utf-8")),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, train, and print a one-line summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("model"), help="model directory")
    parser.add_argument("--sessions", type=int, default=DEFAULT_SESSIONS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    if args.sessions < 1:
        parser.error("--sessions must be at least 1")
    print(train_model(args.out, sessions=args.sessions, seed=args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
