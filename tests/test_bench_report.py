"""The benchmark's arithmetic and report: statistics, targets, CPU facts."""

import math

import pytest

from bench import load, probes, report

CPUINFO = """processor\t: 0
model name\t: Example CPU 9000
flags\t\t: fpu sse2 avx2 avx512f amx_bf16

processor\t: 1
model name\t: Example CPU 9000
flags\t\t: fpu sse2 avx2 avx512f amx_bf16
"""


def test_summarize_counts_images_per_second_and_percentiles():
    stats = load.summarize("raw", 4, [10.0, 20.0, 30.0, 40.0, 50.0], 1, 2.0, items=4)

    assert stats == load.Stats(
        label="raw",
        concurrency=4,
        requests=5,
        errors=1,
        seconds=2.0,
        throughput=10.0,
        p50=30.0,
        p95=48.0,
        p99=49.6,
    )


def test_summarize_without_successes_has_no_percentiles():
    stats = load.summarize("ours", 2, [], 3, 1.0)

    assert (stats.requests, stats.errors, stats.throughput) == (0, 3, 0.0)
    assert math.isnan(stats.p50) and math.isnan(stats.p99)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.9, report.MET), (0.85, report.MET), (0.5, report.NOT_MET)],
)
def test_check_compares_with_the_goal(value, expected):
    target = report.check("ratio", value, ">= 0.85", lambda v: v >= 0.85)

    assert target == report.Target("ratio", f"{value:.3g}", ">= 0.85", expected)


@pytest.mark.parametrize("value", [None, float("nan")])
def test_check_counts_a_missing_measurement_as_not_met(value):
    target = report.check("ratio", value, ">= 2", lambda v: v >= 2)

    assert target == report.Target("ratio", "not measured", ">= 2", report.NOT_MET)


def test_targets_print_one_line_each_with_their_status():
    targets = [
        report.Target("a", "1", ">= 1", report.MET),
        report.Target("b", "0.5", ">= 1", report.NOT_MET),
        report.Target("c", "not run", "x", report.NOT_APPLICABLE),
    ]

    assert report.format_targets(targets).splitlines() == [
        "target a: 1 (goal >= 1) MET",
        "target b: 0.5 (goal >= 1) NOT MET",
        "target c: not run (goal x) N/A",
    ]


def test_markdown_report_has_facts_table_and_targets():
    stats = load.summarize("ours", 8, [100.0, 200.0], 0, 1.0)
    text = report.markdown_report(
        "Title",
        [("CPU", "Example, 2 cores")],
        [stats],
        [report.Target("a", "1", ">= 1", report.MET)],
        ["A note."],
    )

    assert text.splitlines()[:3] == ["# Title", "", "- CPU: Example, 2 cores"]
    assert "| ours | 8 | 2 | 0 | 2.00 | 150.0 | 195.0 | 199.0 |" in text
    assert "| a | 1 | >= 1 | met |" in text
    assert text.endswith("A note.\n")


def test_cpu_info_reads_model_and_bf16_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)

    model_name, cores, flags = probes.cpu_info(path)

    assert model_name == "Example CPU 9000"
    assert cores >= 1
    assert flags == ["amx_bf16"]


def test_at_least_and_at_most_write_the_goal_and_unit():
    assert report.at_least(
        "ratio", 1.5, 2.0, detail="at N=2", condition=" at N=8"
    ) == report.Target("ratio", "1.5 (at N=2)", ">= 2 at N=8", report.NOT_MET)
    assert report.at_most("memory", 71.84, 120.0, unit=" MB") == report.Target(
        "memory", "71.8 MB", "<= 120 MB", report.MET
    )
