"""``make bench`` in miniature: the whole benchmark in a few seconds' counts.

Runs ``python -m bench.run --smoke`` on the session's export and model
server, so every stage (raw, ours, baseline, probes, report) keeps
working; it checks that the report has its table and every target line,
never the speed. To stay short it reuses the session's processes: the
session's fp32 export also stands in for the bf16 one (the bf16 export
itself is tested in ``test_export_precision.py``), and the benchmark's
own start of the model server is not run here.
"""

import os
import re
import subprocess

import pytest

from tools import stack

pytestmark = pytest.mark.e2e

SMOKE_TIMEOUT_SECONDS = 600
TARGETS = (
    "ours/raw throughput at the best N",
    "ours/baseline throughput",
    "ours p50 at N=1 / raw batch-1 p50",
    "gateway worker RSS (largest worker)",
    "TensorFlow mapped in gateway workers",
    "bytes per image to the model server (largest)",
    "decode + resize of a 6000x4000 JPEG (median)",
    "bf16/fp32 throughput",
)
ROW = re.compile(
    r"^(raw|raw bf16|ours|baseline) +(\d+) +(\d+) +(\d+) +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+$"
)


@pytest.fixture(scope="module")
def smoke(model_base, model_server, tmp_path_factory):
    """The output and report of one smoke run."""
    work_dir = tmp_path_factory.mktemp("bench")
    output = work_dir / "report.md"
    result = subprocess.run(
        [
            str(stack.MODEL_PYTHON),
            "-m",
            "bench.run",
            "--smoke",
            "--model-base",
            str(model_base),
            "--bf16-base",
            str(model_base),
            "--model-server",
            model_server,
            "--work-dir",
            str(work_dir),
            "--output",
            str(output),
        ],
        cwd=stack.ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_SECONDS,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    return result.stdout, output.read_text()


def test_smoke_prints_a_row_per_run_without_errors(smoke):
    stdout, _ = smoke
    rows = [match.groups() for match in map(ROW.match, stdout.splitlines()) if match]

    # Each run is printed as it finishes and again in the final table;
    # bf16 runs at batch 1 and at fp32's fastest batch size.
    measured = {(label, int(n)) for label, n, _, _ in rows}
    bf16 = {n for label, n in measured if label == "raw bf16"}
    assert sorted(measured - {("raw bf16", n) for n in bf16}) == [
        ("baseline", 1),
        ("baseline", 2),
        ("ours", 1),
        ("ours", 2),
        ("raw", 1),
        ("raw", 2),
    ]
    assert 1 in bf16 and bf16 <= {1, 2}
    assert all(int(requests) > 0 and errors == "0" for _, _, requests, errors in rows)


def test_smoke_prints_every_target_with_a_status(smoke):
    stdout, _ = smoke
    lines = [line for line in stdout.splitlines() if line.startswith("target ")]

    assert [line.split(":")[0].removeprefix("target ") for line in lines] == list(
        TARGETS
    )
    assert all(line.endswith((" MET", " NOT MET", " N/A")) for line in lines), lines
    # The probes measured something, whatever the speed.
    assert "target TensorFlow mapped in gateway workers: none (goal none) MET" in lines
    assert "bf16 vs fp32 on the photos: top-5 agrees (in order) on 8/8" in stdout
    # The N=1 target comes from the alternated calls, not the table rows.
    assert re.search(
        r"^N=1 latency, alternated with raw batch-1 calls: "
        r"p50 ours [\d.]+ ms, raw [\d.]+ ms \(2 pairs\)$",
        stdout,
        re.MULTILINE,
    )
    assert any(
        line.startswith("target ours p50 at N=1 / raw batch-1 p50: ")
        and "(alternated, 2 pairs)" in line
        for line in lines
    ), lines


def test_smoke_writes_the_report_with_the_machine(smoke):
    _, text = smoke

    assert text.startswith("# DeepClassify benchmarks\n")
    assert re.search(r"^- CPU: .+, \d+ cores$", text, re.MULTILINE)
    assert "## Throughput and latency" in text
    assert "## Targets" in text
    assert text.count("| met |") + text.count("| not met |") + text.count(
        "| n/a |"
    ) == len(TARGETS)
