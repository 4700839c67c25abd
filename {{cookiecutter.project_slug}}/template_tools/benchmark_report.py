# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Turns the benchmark's results into the printed table, bench/results.json and the latency plot."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cost import ROWS
from .destination import PUBLISH_LIMIT_PER_1000, PUBLISH_TARGET

HANDLER_LABELS = {"batch": "batch mode", "per_record": "per-record mode", "naive": "naive (Sagify-like)"}
MAX_PACKAGE_BYTES = 2_000_000

Results = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """One of the benchmark's targets: what it says, and whether the results meet it (None: not measured)."""

    metric: str
    text: str
    check: Callable[[Results], bool | None]


def _at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _all(*verdicts: bool | None) -> bool | None:
    return None if None in verdicts else all(verdicts)


# Every target is a ratio measured in one run, never a time in ms: the same commit's times moved
# about 3x between two machines while the ratios stayed put.
TARGETS = (
    Target(
        "batch10_latency_multiple",
        "batch <= 1.25x, per-record <= 2x",
        lambda r: _all(
            _at_most(r["batch10_latency_multiple"]["batch"], 1.25),
            _at_most(r["batch10_latency_multiple"]["per_record"], 2.0),
        ),
    ),
    Target(
        "invoke_per_1000",
        "batch <= 110",
        lambda r: _at_most(r["calls_per_1000"]["batch"]["invoke"], 110),
    ),
    Target(
        "publish_per_1000",
        PUBLISH_TARGET,
        lambda r: _all(
            *(
                _at_most(r["calls_per_1000"][mode]["publish"], PUBLISH_LIMIT_PER_1000)
                for mode in ("batch", "per_record")
            )
        ),
    ),
    Target(
        "get_queue_url_per_1000",
        "0 per-record GetQueueUrl",
        lambda r: _all(*(_at_most(r["get_queue_url_per_1000"][mode], 0) for mode in ("batch", "per_record"))),
    ),
    Target(
        "cpu_share_of_naive",
        "batch <= 0.10 of naive",
        lambda r: _at_most((r.get("cpu_share_of_naive") or {}).get("batch"), 0.10),
    ),
    Target("import_ratio", "<= 1.3x (median)", lambda r: _at_most(r["import_ratio"], 1.3)),
    Target("package_bytes", "<= 2 MB", lambda r: _at_most(r["package_bytes"], MAX_PACKAGE_BYTES)),
    Target(
        "local_throughput_fraction",
        ">= 0.80",
        lambda r: None if r["local_throughput_fraction"] is None else r["local_throughput_fraction"] >= 0.80,
    ),
)


def judge(results: Results) -> dict[str, bool | None]:
    """{metric: met?} for every target; None where the figure was not measured."""
    return {target.metric: target.check(results) for target in TARGETS}


def _number(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def _verdict(metric: str, verdicts: dict[str, bool | None]) -> str:
    verdict = verdicts.get(metric)
    return "not measured" if verdict is None else ("pass" if verdict else "MISS")


def _per_handler(values: dict[str, float | None], unit: str = "", digits: int = 2) -> list[str]:
    return [_number(values.get(name), unit, digits) for name in HANDLER_LABELS]


def table_rows(results: Results) -> list[list[str]]:
    """Header plus one row per figure: metric, the three handlers (or one value), target, verdict."""
    verdicts = judge(results)
    targets = {target.metric: target.text for target in TARGETS}
    latency = results["endpoint_latency_ms"]
    calls = results["calls_per_1000"]
    rows = [["figure", *HANDLER_LABELS.values(), "target", "result"]]

    def row(label: str, cells: list[str], metric: str | None = None) -> None:
        rows.append([label, *cells, targets.get(metric or "", ""), _verdict(metric, verdicts) if metric else ""])

    for size, key in ((10, "batch10"), (100, "batch100")):
        multiple = results.get(f"{key}_latency_multiple") or {}
        milliseconds = results.get(f"{key}_latency_ms") or {}
        row(
            f"wall per batch of {size} (x {latency} ms)",
            _per_handler(multiple, "x"),
            "batch10_latency_multiple" if size == 10 else None,
        )
        row("  same, in ms", _per_handler(milliseconds, " ms", 1))
    for kind, metric in (("invoke", "invoke_per_1000"), ("publish", "publish_per_1000"), ("other", None)):
        label = {"invoke": "InvokeEndpoint", "publish": "publish calls", "other": "other calls"}[kind]
        row(f"{label} per 1,000 predictions", [_number(calls[name][kind], "", 0) for name in HANDLER_LABELS], metric)
    row("  of which GetQueueUrl", _per_handler(results["get_queue_url_per_1000"], "", 0), "get_queue_url_per_1000")
    shares = {**(results.get("cpu_share_of_naive") or {}), "naive": 1.0}
    row("handler CPU, share of naive's", _per_handler(shares, "", 3), "cpu_share_of_naive")
    row("  same, in ms per record", _per_handler(results["cpu_ms_per_record_by_handler"], " ms", 3))
    cold = results["cold_start_ms"]
    low, high = results.get("import_ratio_spread") or (None, None)
    row(
        "cold start: import app + clients",
        [
            f"{_number(results['import_ratio'], 'x')} median of {cold['repetitions']} pairs, "
            f"{_number(low, 'x')}-{_number(high, 'x')} ({_number(cold['app_import_and_clients'], ' ms', 0)} vs "
            f"{_number(cold['boto3_import_and_clients'], ' ms', 0)} for boto3 + 2 clients)",
            "",
            "",
        ],
        "import_ratio",
    )
    package = results["package_bytes"]
    row(
        "deployment package (chalice package)",
        [_number(None if package is None else package / 1024, " KiB", 1), "", ""],
        "package_bytes",
    )
    throughput = results["local_throughput"]
    if results["local_throughput_fraction"] is None:
        cell = f"not measured ({throughput.get('not_measured', 'unknown reason')})"
    else:
        cell = (
            f"{results['local_throughput_fraction']:.2f} ({throughput['pipeline_msg_per_s']:.0f} of "
            f"{throughput['emulator_ceiling_msg_per_s'] / throughput['queue_hops']:.0f} msg/s: "
            f"{throughput['emulator_ceiling_msg_per_s']:.0f} per hop, {throughput['queue_hops']} hops)"
        )
    row("local end-to-end throughput / emulator", [cell, "", ""], "local_throughput_fraction")
    return rows


def cost_rows(results: Results) -> list[list[str]]:
    """Header plus one row per cost item and the total: USD per million predictions, and the quantity."""
    cost = results["cost_per_million"]
    rows = [["per million predictions", *HANDLER_LABELS.values()]]
    for key, label in ROWS:
        item = cost["rows"][key]
        unit = UNIT_ABBREVIATIONS.get(item["unit"], item["unit"])
        rows.append(
            [label]
            + [f"${item[name]['usd']:.4f} ({_quantity(item[name]['quantity'])} {unit})" for name in HANDLER_LABELS]
        )
    rows.append(["total, endpoint excluded", *(f"${cost['total'][name]:.4f}" for name in HANDLER_LABELS)])
    batch = cost["total"]["batch"]
    rows.append(["  batch mode's total as a share", *(f"{batch / cost['total'][name]:.2f}" for name in HANDLER_LABELS)])
    return rows


UNIT_ABBREVIATIONS = {
    "invocations": "req",
    "requests": "req",
    "GB-seconds": "GB-s",
    "bytes": "B",
    "bytes read": "B",
    "KiB written": "KiB",
    "write request units": "WRU",
}


def _quantity(value: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:,.1f}{suffix}"
    return f"{value:,.1f}"


def render_cost_table(results: Results) -> str:
    """The cost table, what it assumes, and the endpoint's capacity per worker."""
    cost = results["cost_per_million"]
    regions = sorted({price["region"] for price in cost["prices"].values()})
    dates = sorted({price["date"] for price in cost["prices"].values()})
    rows = cost_rows(results)
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        f"Cost per million predictions, endpoint excluded ({cost['currency']}): {cost['source']} source, "
        f"{cost['destination']} destination, batch of {cost['batch_size']}, {cost['memory_mb']} MB, "
        f"LATENCY_MS={cost['endpoint_latency_ms']}; prices for {', '.join(regions)} read {', '.join(dates)} "
        f"({cost['prices_file']})"
    ]
    for number, row in enumerate(rows):
        cells = [
            cell.rjust(width) if column else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("-" * len(lines[-1]))
    capacity = results.get("endpoint_capacity")
    if capacity:
        lines += ["", _capacity_line(capacity)]
    return "\n".join(lines)


def _capacity_line(capacity: Results) -> str:
    batch, single = capacity["batch"], capacity["per_record"]
    line = (
        f"Endpoint capacity, one local worker at 0 ms: {batch['predictions_per_second']:,.0f} predictions/s in calls "
        f"of {batch['records_per_call']}, {single['predictions_per_second']:,.0f} one record a call "
        f"({capacity['batch_over_per_record']:.1f}x)."
    )
    if batch["instance_hours_per_million"] is None:
        return line + f" No vCPU count known for {capacity['instance_type'] or 'the instance type'}."
    line += (
        f" On {capacity['instance_type']} (one worker per vCPU): {batch['instance_hours_per_million']:.3f} vs "
        f"{single['instance_hours_per_million']:.3f} instance-hours per million predictions"
    )
    if batch["usd_per_million"] is not None:
        line += f" (${batch['usd_per_million']:.4f} vs ${single['usd_per_million']:.4f})"
    return line + "."


def render_table(results: Results) -> str:
    """The rows as aligned text; a single-value figure spans the three handler columns."""
    rows = table_rows(results)
    widths = [max(len(row[column]) for row in rows if not _spans(row) or column in (0, 4, 5)) for column in range(6)]
    lines = []
    for number, row in enumerate(rows):
        if _spans(row):
            span = sum(widths[1:4]) + 6
            cells = [row[0].ljust(widths[0]), row[1].ljust(span), row[4].ljust(widths[4]), row[5]]
        else:
            cells = [
                cell.ljust(width) if column == 0 else cell.rjust(width) if column < 4 else cell.ljust(width)
                for column, (cell, width) in enumerate(zip(row, widths, strict=True))
            ]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def _spans(row: list[str]) -> bool:
    return row[2] == "" and row[3] == "" and row[1] != ""


def write_json(results: Results, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def plot_latency(results: Results, path: Path) -> None:
    """Per-batch wall time against batch size, one line per handler, the endpoint latency dashed."""
    # Imported here: matplotlib takes a while to import and only this step needs it.
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4.5), dpi=120)
    for name, label in HANDLER_LABELS.items():
        series = results["latency_ms_by_batch_size"][name]
        sizes = sorted(int(size) for size in series)
        axes.plot(sizes, [series[str(size)] for size in sizes], marker="o", label=label)
    latency = results["endpoint_latency_ms"]
    if latency:
        axes.axhline(latency, color="grey", linestyle="--", linewidth=1, label=f"endpoint latency ({latency} ms)")
    axes.set_xlabel("records per Lambda batch")
    axes.set_ylabel("wall time per batch (ms)")
    axes.set_yscale("log")
    axes.set_title(f"Handler wall time per batch (endpoint concurrency {results['endpoint_concurrency']})")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    pyplot.close(figure)
