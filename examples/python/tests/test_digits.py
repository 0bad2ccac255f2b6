"""The digits client, run as a user would, against the real server: held-out accuracy
≥ 0.964 with each loss (the lowest the README reports, over seeds 0–15 and two server
builds; this run is seed 0), and the same numbers on a second run (everything is
seeded)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1]

# Wall-clock figures and the random session id differ from run to run; nothing else may.
VARYING = {"steps_per_second", "train_seconds", "model_id"}


def run_digits(address: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "digits.py"), "--address", address, *args],
        check=True, capture_output=True, text=True, timeout=300,
    )
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line, got:\n{out.stdout}"
    return json.loads(lines[0])


@pytest.mark.parametrize("loss", ["svm", "softmax"])
def test_digits_accuracy_and_determinism(server_address, loss):
    first = run_digits(server_address, "--loss", loss)
    assert first["loss"] == loss
    assert first["test_examples"] == 450 and first["train_examples"] == 1347
    assert first["steps"] == first["epochs"] * 22  # ceil(1347 / 64) batches per epoch
    # The README's figure: 0.964 was the worst seed; a run below it breaks that claim.
    assert first["test_accuracy"] >= 0.964, first
    assert first["train_accuracy"] >= first["test_accuracy"] - 0.05, first

    second = run_digits(server_address, "--loss", loss)
    strip = lambda r: {k: v for k, v in r.items() if k not in VARYING}  # noqa: E731
    assert strip(second) == strip(first)
