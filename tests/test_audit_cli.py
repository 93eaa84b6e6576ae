"""``spectheory audit``: verdicts printed for a passing and a failing decoder."""

from __future__ import annotations

import json

import pytest

from spectheory.cli import main


def test_audit_command_json_pass_and_fail(capsys):
    assert main(["audit", "--no-transformers", "--rule", "sd", "--tv", "0.15", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (a,) = out["audits"]
    assert a["status"] == "PASS" and a["exact_tv"] < 1e-12
    assert main(["audit", "--no-transformers", "--rule", "ensemble", "--tv", "0.15",
                 "--json"]) == 0
    (b,) = json.loads(capsys.readouterr().out)["audits"]
    assert b["status"] == "FAIL" and b["tv_interval"][0] <= b["exact_tv"] <= b["tv_interval"][1]


@pytest.mark.slow
def test_audit_command_text_with_transformers(capsys):
    pytest.importorskip("transformers")
    assert main(["audit", "--tv", "0.15", "--seed", "3"]) == 0
    lines = [ln.split()[0] for ln in capsys.readouterr().out.splitlines()[1:]]
    assert lines == ["PASS", "FAIL", "PASS"]
