"""GELU from Python, both forms, on the real server: the digits client trains with each to
the accuracy it reaches deterministically (0.9644 held-out after 10 epochs of Fit), and
the two forms give close but different losses, so the form requested is the form
computed."""

from __future__ import annotations

from test_digits import run_digits


def test_gelu_forms_train_digits(server_address):
    runs = {
        act: run_digits(server_address, "--activation", act, "--epochs", "10")
        for act in ("gelu", "gelu-tanh")
    }
    for act, r in runs.items():
        assert r["activation"] == act
        assert r["steps"] == 10 * 22
        assert r["test_accuracy"] >= 0.94, r
    exact, approx = runs["gelu"]["final_loss"], runs["gelu-tanh"]["final_loss"]
    assert exact != approx, "the tanh form computed the same as the exact one"
    assert abs(exact - approx) < 1e-3, (exact, approx)
