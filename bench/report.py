"""The benchmark's report: the table, the ratios and the issue's targets.

The same report is printed and written as Markdown; every target is
printed as ``met``, ``not met`` or ``n/a`` (with the reason).
"""

import dataclasses
import math

MET = "met"
NOT_MET = "not met"
NOT_APPLICABLE = "n/a"


@dataclasses.dataclass(frozen=True)
class Target:
    """One target of the issue and how this run did against it."""

    name: str
    measured: str
    goal: str
    status: str


def check(name, value, goal, passes, unit="", detail=""):
    """Builds a ``Target`` from a measured number.

    Args:
        name: what is measured.
        value: the measured number; None or NaN when it could not be.
        goal: the goal as written, e.g. ``">= 0.85"``.
        passes: whether ``value`` meets the goal.
        unit: appended to the value. Defaults to none.
        detail: appended after the value, e.g. which runs were compared.
            Defaults to none.

    Returns:
        A ``Target``; ``not met`` when the value is missing.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Target(name, "not measured", goal, NOT_MET)

    status = MET if passes(value) else NOT_MET

    measured = f"{value:.3g}{unit}" + (f" ({detail})" if detail else "")

    return Target(name, measured, goal, status)


def at_least(name, value, goal, unit="", detail="", condition=""):
    """A target met when ``value >= goal``; arguments as for ``check``.

    ``condition`` is appended to the goal as written, e.g. ``" at N=8"``.
    """
    return check(
        name, value, f">= {goal:g}{unit}{condition}", lambda v: v >= goal, unit, detail
    )


def at_most(name, value, goal, unit="", detail=""):
    """A target met when ``value <= goal``; arguments as for ``check``."""
    return check(name, value, f"<= {goal:g}{unit}", lambda v: v <= goal, unit, detail)


def format_table(rows):
    """Lays out the throughput and latency table as plain text.

    Args:
        rows: ``Stats`` in the order to show.

    Returns:
        The table, one line per row with a header line.
    """
    header = (
        f"{'run':<14} {'N/batch':>7} {'requests':>8} {'errors':>6} "
        f"{'img/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
    )
    lines = [header, "-" * len(header)]
    for stats in rows:
        lines.append(
            f"{stats.label:<14} {stats.concurrency:>7} {stats.requests:>8} "
            f"{stats.errors:>6} {stats.throughput:>8.2f} {stats.p50:>8.1f} "
            f"{stats.p95:>8.1f} {stats.p99:>8.1f}"
        )

    return "\n".join(lines)


def markdown_table(rows):
    """The same table as ``format_table``, in Markdown."""
    lines = [
        "| run | N / batch | requests | errors | images/s | p50 ms | p95 ms | p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for stats in rows:
        lines.append(
            f"| {stats.label} | {stats.concurrency} | {stats.requests} | "
            f"{stats.errors} | {stats.throughput:.2f} | {stats.p50:.1f} | "
            f"{stats.p95:.1f} | {stats.p99:.1f} |"
        )

    return "\n".join(lines)


def format_targets(targets):
    """One line per target: ``target <name>: <measured> (goal <goal>) <status>``."""
    return "\n".join(
        f"target {target.name}: {target.measured} (goal {target.goal}) "
        f"{target.status.upper()}"
        for target in targets
    )


def markdown_targets(targets):
    """The targets as a Markdown table."""
    lines = ["| target | measured | goal | status |", "| --- | ---: | --- | --- |"]
    lines += [f"| {t.name} | {t.measured} | {t.goal} | {t.status} |" for t in targets]

    return "\n".join(lines)


def markdown_report(title, facts, rows, targets, notes):
    """Writes the whole report as a Markdown document.

    Args:
        title: the document's heading.
        facts: ``(name, value)`` pairs: machine, settings, measurements.
        rows: ``Stats`` of the table.
        targets: ``Target`` list.
        notes: paragraphs printed after the tables.

    Returns:
        The document's text.
    """
    parts = [f"# {title}", ""]
    parts += [f"- {name}: {value}" for name, value in facts]
    parts += ["", "## Throughput and latency", "", markdown_table(rows)]
    parts += ["", "## Targets", "", markdown_targets(targets), ""]
    for note in notes:
        parts += [note, ""]

    return "\n".join(parts)
