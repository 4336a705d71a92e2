"""The short soak: ``tools/soak.py`` end to end, 100 requests.

``make soak`` runs the full one (2000 requests at concurrency 16, memory
checked); here the same code runs briefly so that it cannot rot. Memory
is reported but not judged: 100 requests are too few to tell growth from
the noise of a warming process.
"""

import pytest

from tools import soak

pytestmark = pytest.mark.e2e


def test_short_soak_answers_every_request(model_base, log_dir, capsys):
    code = soak.main(
        [
            "--requests",
            "100",
            "--warmup",
            "16",
            "--concurrency",
            "8",
            "--time-limit",
            "300",
            "--max-memory-growth",
            "-1",
            "--model-base",
            str(model_base),
            "--log-dir",
            str(log_dir / "soak"),
        ]
    )
    printed = capsys.readouterr().out.splitlines()

    assert code == 0
    assert printed[1].startswith("soak: 100 of 100 requests sent in ")
    assert printed[1].endswith(": 50 uploads, 50 URLs")
    assert printed[2] == "  answers: 200 x 100"
    assert printed[3] == "  errors: none"
    assert printed[4].startswith("  latency: p50 ")
    assert [line.split()[0] for line in printed[6:]] == ["gateway", "model"]
