"""Tests of spectheory.engines: every parser on the sample logs of tests/data/engine_logs (written from
the engines' source formats cited in each parser module), the conversions checked against values
computed by hand from the counts the samples were built from, the chain fit, the configurations and
the CLI commands.

The samples were built as follows (independent of the parsers):

* vllm_v1.log: interval 1 has 100 drafts of k = 3 with 80, 60, 40 drafts accepting at positions
  1, 2, 3 (180 accepted, 300 drafted, mean length 1 + 180/100 = 2.80); interval 2 has 50 drafts with
  45, 35, 20 (100 accepted, 150 drafted, mean 3.00). Together: 150 drafts, r = 125/150, 95/150,
  60/150, mean accepted 280/150.
* vllm_metrics.prom: 200 drafts of k = 4, per-position counts 170, 130, 90, 40 (430 accepted).
* sglang_meta.jsonl: histograms [8, 12, 10, 10] (40 verify steps) and [2, 4, 6, 8] (20 steps);
  completion tokens = accepted + steps (bonus) + 1 (prefill): 62 + 40 + 1 = 103 and 40 + 20 + 1 = 61.
* llamacpp_speculative_simple.log: 256 generated, 320 drafted, 176 accepted: 80 target calls.
* llamacpp_server.log: 40 drafts, 30 with an accepted token, 320 drafted, 100 accepted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spectheory.blocks import Tree
from spectheory.cli import main
from spectheory.engines import fit_chain, parse, sglang_flags, vllm_speculative_config
from spectheory.trees import CostModel

DATA = Path(__file__).resolve().parent / "data" / "engine_logs"


def _read(name: str) -> str:
    return (DATA / name).read_text()


def test_vllm_log_lines_aggregate_by_drafts() -> None:
    s = parse(_read("vllm_v1.log"))
    assert s.engine == "vllm" and s.records == 2 and s.num_speculative_tokens == 3
    assert s.num_drafts == 150 and s.drafted_tokens == 450 and s.accepted_tokens == 280
    assert s.mean_accepted == pytest.approx(280 / 150)
    assert s.mean_acceptance_length == pytest.approx(1 + 280 / 150)
    assert s.position_rates == pytest.approx([125 / 150, 95 / 150, 60 / 150])
    assert s.conditional_rates == pytest.approx([125 / 150, 95 / 125, 60 / 95])
    assert s.acceptance_rate == pytest.approx(280 / 450)


def test_vllm_single_line_matches_its_own_fields() -> None:
    line = _read("vllm_v1.log").splitlines()[1]
    s = parse(line, "vllm")
    assert s.num_drafts == 100 and s.mean_acceptance_length == pytest.approx(2.80)
    assert s.position_rates == pytest.approx([0.8, 0.6, 0.4])
    assert float(np.sum(s.position_rates)) == pytest.approx(s.mean_accepted)


def test_vllm_prometheus_counters() -> None:
    s = parse(_read("vllm_metrics.prom"))
    assert s.source == "vllm prometheus" and s.num_drafts == 200 and s.num_speculative_tokens == 4
    assert s.position_rates == pytest.approx([0.85, 0.65, 0.45, 0.20])
    assert s.conditional_rates == pytest.approx([0.85, 0.65 / 0.85, 0.45 / 0.65, 0.2 / 0.45])
    assert s.mean_acceptance_length == pytest.approx(1 + 430 / 200)
    assert s.drafted_tokens == 800 and s.accepted_tokens == 430


def test_sglang_meta_info_histogram() -> None:
    s = parse(_read("sglang_meta.jsonl"))
    assert s.engine == "sglang" and s.num_drafts == 60
    assert s.mean_acceptance_length == pytest.approx((103 + 61) / 60)  # SGLang's definition
    assert s.mean_accepted == pytest.approx((16 + 2 * 16 + 3 * 18) / 60)  # 1.7
    assert s.position_rates == pytest.approx([50 / 60, 34 / 60, 18 / 60])
    assert s.accepted_tokens == 102 and s.drafted_tokens == 180


def test_sglang_without_histogram_subtracts_prefill_and_bonus() -> None:
    text = '{"meta_info": {"completion_tokens": 103, "spec_verify_ct": 40}}'
    s = parse(text)
    assert s.mean_acceptance_length == pytest.approx(103 / 40)
    assert s.mean_accepted == pytest.approx((103 - 1) / 40 - 1)


def test_sglang_scheduler_lines() -> None:
    s = parse(_read("sglang_scheduler.log"))
    assert s.source == "sglang scheduler log"
    assert s.mean_acceptance_length == pytest.approx(3.0) and s.mean_accepted == pytest.approx(2.0)
    assert s.position_rates is None and s.num_drafts is None


def test_llamacpp_summary_and_statistics() -> None:
    s = parse(_read("llamacpp_speculative_simple.log"))
    assert s.engine == "llamacpp" and s.drafted_tokens == 320 and s.accepted_tokens == 176
    assert s.extra["target_calls"] == 80 and s.mean_accepted == pytest.approx(176 / 80)
    assert s.acceptance_rate == pytest.approx(0.55) and s.num_speculative_tokens == 16
    s = parse(_read("llamacpp_server.log"))
    assert s.num_drafts == 40 and s.position_rates == pytest.approx([0.75])
    assert s.mean_accepted == pytest.approx(2.5)
    s = parse(_read("llamacpp_server.log").split("statistics")[0])
    assert s.source == "llama.cpp server" and s.accepted_tokens == 100 and s.mean_accepted is None


def test_detect_and_errors() -> None:
    with pytest.raises(ValueError, match="--engine"):
        parse("nothing to see here")
    with pytest.raises(ValueError, match="engine"):
        parse("x", "trt")


def test_fit_expected_tokens_by_hand() -> None:
    s = parse(_read("vllm_metrics.prom"))
    f = fit_chain(s, max_k=6)
    # k <= 4: the measured r_i summed: 0.85, 1.5, 1.95, 2.15 accepted
    assert f.expected[:4] == pytest.approx([0.85, 1.5, 1.95, 2.15])
    assert np.all(np.diff(f.conditional[3:]) <= 1e-12) and f.expected[5] > f.expected[3]
    # constant target cost 1, draft 0.05 per token: rates (1 + E_k) / (1 + 0.05 k)
    k, rate = f.best_k(CostModel(draft_per_depth=0.05))
    assert rate[4] == pytest.approx(3.15 / 1.2) and rate[3] == pytest.approx(2.95 / 1.15)
    assert k == int(np.argmax(rate))
    # expensive drafting (0.5 per token): 1.85 / 1.5 at k = 1, 2.5 / 2.0 at k = 2
    k2, rate2 = f.best_k(CostModel(draft_per_depth=0.5))
    assert rate2[1] == pytest.approx(1.85 / 1.5) and rate2[2] == pytest.approx(2.5 / 2.0)
    assert k2 == int(np.argmax(rate2))


def test_fit_warns_on_increasing_rates_and_fits_constant_from_mean() -> None:
    f = fit_chain(parse(_read("vllm_inconsistent.log")))
    assert any("increase" in w for w in f.warnings)
    s = parse(_read("sglang_scheduler.log"))
    with pytest.raises(ValueError, match="--k"):
        fit_chain(s)
    f = fit_chain(s, max_k=4, k=2)
    c = f.conditional[0]  # c + c^2 = 2 accepted with k = 2: c = 1
    assert c == pytest.approx(1.0)
    f = fit_chain(s, max_k=4, k=4)
    c = f.conditional[0]
    assert c + c**2 + c**3 + c**4 == pytest.approx(2.0, abs=1e-9)


def test_configs() -> None:
    t = Tree((-1, 0, 1, 0))
    cfg = vllm_speculative_config(t)
    assert cfg == {"method": "eagle", "num_speculative_tokens": 3,
                   "speculative_token_tree": "[(0,),(1,),(0,0)]"}
    assert vllm_speculative_config(4) == {"method": "eagle", "num_speculative_tokens": 4}
    assert sglang_flags(t) == ["--speculative-algorithm", "EAGLE", "--speculative-num-steps", "2",
                               "--speculative-eagle-topk", "2", "--speculative-num-draft-tokens",
                               "4"]
    assert sglang_flags(3)[-1] == "4"


# ---------------------------------------------------------------------- CLI
def test_cli_engine_vllm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["engine", str(DATA / "vllm_v1.log"), "--out", str(tmp_path), "--no-plots"])
    out = capsys.readouterr().out
    assert rc == 0 and "recommended k =" in out and "0.8333" in out
    data = json.loads((tmp_path / "engine.json").read_text())
    assert data["stats"]["num_drafts"] == 150 and "spectheory_version" in data


def test_cli_engine_with_dumps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(6), size=4)
    Q = rng.dirichlet(np.ones(6), size=4)
    np.save(tmp_path / "p.npy", P)
    np.save(tmp_path / "q.npy", Q)
    rc = main(["engine", str(DATA / "vllm_v1.log"), "--p", str(tmp_path / "p.npy"), "--q",
               str(tmp_path / "q.npy"), "--out", str(tmp_path), "--samples", "16"])
    out = capsys.readouterr().out
    assert rc == 0 and "alpha*_wor" in out and "headline" in out
    data = json.loads((tmp_path / "engine.json").read_text())
    beta = float(np.minimum(P, Q).sum(axis=1).mean())
    assert data["bounds"]["single_draft_acceptance"] == pytest.approx(beta)
    assert (tmp_path / "engine.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_engine_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["engine", str(tmp_path / "missing.log")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["engine", str(DATA / "vllm_v1.log"), "--p", "x.npy"]) == 2
    assert "--p and --q" in capsys.readouterr().err
    assert main(["engine", str(DATA / "vllm_v1.log"), "--p", str(tmp_path / "no.npy"), "--q",
                 str(tmp_path / "no.npy")]) == 2
    assert "--p: file" in capsys.readouterr().err


def test_cli_tree_on_dumps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    P = np.array([[0.6, 0.3, 0.1]])
    Q = np.array([[0.2, 0.3, 0.5]])
    np.save(tmp_path / "p.npy", P)
    np.save(tmp_path / "q.npy", Q)
    rc = main(["tree", "--budget", "4", "--p", str(tmp_path / "p.npy"), "--q",
               str(tmp_path / "q.npy"), "--k", "3", "--format", "sglang", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "SGLang --speculative-algorithm EAGLE" in out
    data = json.loads((tmp_path / "tree.json").read_text())
    # conditional rrs_wor vector (3/5, 2/5, 1), the best 4-node tree's value 1.36 (test_trees)
    assert data["tree"]["expected_accepted"] == pytest.approx(1.36)
    # greedy baseline by hand: first-accept probabilities f = (0.6, 0.16, 0.24); it adds the
    # nodes of path probability 0.6, 0.36, 0.216, then 0.16 (the root's second child): 1.336
    assert data["greedy_baseline"]["expected_accepted"] == pytest.approx(1.336)
    assert "greedy baseline" in out
    assert (tmp_path / "tree.png").exists() and (tmp_path / "tree_budget.png").exists()


def test_cli_tree_validates_before_loading(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tree", "--budget", "0"]) == 2
    assert "--budget" in capsys.readouterr().err
    assert main(["tree", "--budget", "4", "--temperature", "0"]) == 2
    assert "--temperature" in capsys.readouterr().err


# ---------------------------------------------------------------------- CLI polish (issue 14)
def test_cli_leading_minus_and_flag_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bound", "--target", "-0.1,0.8,0.3", "--draft", "0.2,0.3,0.5", "--n", "2"]) == 2
    err = capsys.readouterr().err
    assert "negative (-0.1)" in err and "np.float64" not in err
    assert main(["bound", "--target", "0.5,0.6", "--draft", "0.5,0.5", "--n", "2"]) == 2
    assert "pass --normalize" in capsys.readouterr().err
    assert main(["bound", "--target", str(tmp_path), "--draft", "0.5,0.5", "--n", "2"]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["analyze", "--p", str(tmp_path / "missing.npy"), "--q", "x.npy"]) == 2
    assert "--p: file" in capsys.readouterr().err
    for argv, flag in ((["--max-tokens", "0"], "--max-tokens"), (["--gamma", "0"], "--gamma"),
                       (["--text", str(tmp_path / "none.txt")], "--text")):
        assert main(["analyze", *argv]) == 2
        assert flag in capsys.readouterr().err


def test_cli_engine_chain_block_matches_exact(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`engine --p/--q` reports block verification on the engine's chain under the stationary
    per-position model (Monte Carlo). Reference: exact block_acceptance per dumped position
    (context-free pair) averaged, and the LP lossless bound of the same chain (equal to block
    verification, Sun et al.). 2000 blocks over 4 positions: stderr ~0.02, 4.5 sigma band."""
    from spectheory.blocks import Chain, block_acceptance, block_bound

    rng = np.random.default_rng(1)
    P = rng.dirichlet(np.ones(4), size=4)
    Q = rng.dirichlet(np.ones(4), size=4)
    np.save(tmp_path / "p.npy", P)
    np.save(tmp_path / "q.npy", Q)
    rc = main(["engine", str(DATA / "vllm_v1.log"), "--p", str(tmp_path / "p.npy"), "--q",
               str(tmp_path / "q.npy"), "--out", str(tmp_path), "--samples", "2000",
               "--no-plots"])
    assert rc == 0 and "block verification" in capsys.readouterr().out
    cb = json.loads((tmp_path / "engine.json").read_text())["bounds"]["chain_block"]
    k = cb["k"]
    for rule in ("sd", "block"):
        exact = np.mean([block_acceptance(lambda h, p=p: p, lambda h, q=q: q, Chain(k), rule).mean
                         for p, q in zip(P, Q, strict=True)])
        got = cb[rule]
        assert abs(got["tokens_per_call"] - (1 + exact)) <= 4.5 * got["stderr"] + 1e-12, rule
        if rule == "block":
            lp = np.mean([block_bound(lambda h, p=p: p, lambda h, q=q: q, Chain(k)).value
                          for p, q in zip(P, Q, strict=True)])
            assert exact == pytest.approx(lp, abs=1e-8)
