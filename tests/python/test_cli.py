# SPDX-License-Identifier: MIT
"""Every ``gatecell`` command end to end in quick mode, and the built-in tasks' generators and models."""

import json
import os
import sys
import types

import numpy as np
import pytest

import gatecell as gc
from gatecell import cli, tasks, verify
from helpers import read_safetensors

pytest.importorskip("matplotlib")


def test_demo_quick_writes_report_plots_and_table(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--quick", "--steps", "30", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    for label in ("vanilla RNN", "GRU", "LSTM", "held-out MSE"):
        assert label in text
    files = set(os.listdir(out))
    assert {"report.md", "results.json", "loss_curves.png", "gradient_norms.png", "lstm_gates.png"} <= files
    for png in ("loss_curves.png", "gradient_norms.png", "lstm_gates.png"):
        with open(out / png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    res = json.loads((out / "results.json").read_text())
    assert res["options"]["length"] == 20 and res["options"]["steps"] == 30
    for kind in ("rnn", "gru", "lstm"):
        assert len(res[kind]["dh_norm"]) == 20 and np.isfinite(res[kind]["held_out_mse"])
    report = (out / "report.md").read_text()
    assert "![gradient norms](gradient_norms.png)" in report and "| LSTM |" in report


@pytest.mark.parametrize("task", ["adding", "copy", "chars", "sine"])
def test_train_each_task_quick(task, capsys):
    assert cli.main(["train", task, "--quick", "--steps", "4", "--hidden", "8", "--no-progress"]) == 0
    assert "validation loss" in capsys.readouterr().out


def test_generate_quick_and_bad_prime(capsys, tmp_path):
    assert cli.main(["generate", "--quick", "--steps", "3", "--length", "25", "--no-progress",
                     "--prime", "A "]) == 0
    out = capsys.readouterr().out
    sample = out[out.index("validation loss"):].split("\n", 1)[1]  # the text follows the training summary
    assert sample.startswith("A ") and len(sample.rstrip("\n")) == 2 + 25
    text = tmp_path / "t.txt"
    text.write_text("abcabcabc " * 20)
    with pytest.raises(SystemExit, match="prime"):
        cli.main(["generate", "--quick", "--steps", "2", "--text", str(text), "--prime", "xyz", "--no-progress"])


def test_verify_quick_prints_small_errors(capsys):
    pytest.importorskip("torch")
    assert cli.main(["verify", "--quick", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    worst = out.split("largest relative error vs torch:")[1].splitlines()[0]
    values = [float(part.split()[-1]) for part in worst.split(",")]
    assert len(values) == 4 and max(values) < 1e-4


def test_verify_rows_against_torch_and_onnx_runtime():
    pytest.importorskip("torch")
    rows = verify.run_verify(8, seed=5, out=lambda line: None)
    assert len(rows) == 8
    for row in rows:
        errs = row["errors"]
        tol = 1e-4 if row["config"]["dtype"] == "float32" else 1e-10
        assert max(errs[k] for k in ("out", "h_n", "dx", "dparams")) < tol, row["config"]
        if errs.get("onnx"):
            assert max(errs["onnx"].values()) < 1e-4, row["config"]
    if verify.onnx_available():
        assert any(row["errors"].get("onnx") for row in rows)


def test_bench_delegates_or_explains(monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("gatecell.bench")
    fake.main = lambda argv: calls.append(argv) or 0
    monkeypatch.setitem(sys.modules, "gatecell.bench", fake)
    monkeypatch.setattr(gc, "bench", fake, raising=False)
    assert cli.main(["bench", "--quick", "x"]) == 0 and calls == [["--quick", "x"]]
    monkeypatch.setitem(sys.modules, "gatecell.bench", None)  # as if the module were absent
    monkeypatch.delattr(gc, "bench", raising=False)
    assert cli.main(["bench"]) == 2
    assert "no gatecell.bench" in capsys.readouterr().err


def test_cli_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        cli.main(["demo", "--length", "0"])
    with pytest.raises(SystemExit):
        cli.main(["train", "nosuchtask"])
    with pytest.raises(SystemExit):
        cli.main([])


def test_adding_problem_definition_and_baseline():
    x, y = tasks.adding_problem(2000, 30, seed=0)
    assert x.shape == (2000, 30, 2) and y.shape == (2000, 1)
    assert (x[..., 1].sum(axis=1) == 2).all()
    first = x[:, :15, 1].argmax(axis=1)
    second = 15 + x[:, 15:, 1].argmax(axis=1)
    np.testing.assert_allclose(y[:, 0], x[np.arange(2000), first, 0] + x[np.arange(2000), second, 0], rtol=1e-6)
    assert abs(np.mean((y - 1) ** 2) - tasks.ADDING_BASELINE_MSE) < 0.015


def test_copy_chars_and_sine_generators():
    x, y = tasks.copy_task(4, symbols=3, delay=5, alphabet=6, seed=1)
    assert x.shape == y.shape == (4, 12)
    np.testing.assert_array_equal(y[:, -3:], x[:, :3])
    assert (x[:, 8] == 7).all() and not y[:, :-3].any()
    xc, yc, vocab = tasks.char_dataset(steps=10, n=5)
    assert xc.shape == yc.shape == (5, 10)
    np.testing.assert_array_equal(xc[:, 1:], yc[:, :-1])
    assert vocab.decode(vocab.encode("recurrent")) == "recurrent"
    xs, ys = tasks.sine_forecast(3, steps=40, noise=0.0)
    assert xs.shape == (3, 40, 1) and ys.shape == (3, 1)
    # noiseless: the target continues the signal smoothly from the last observations
    assert np.all(np.abs(ys[:, 0] - xs[:, -1, 0]) < 0.5)


def test_sampling_is_reproducible_and_temperature_sharpens():
    model = tasks.recurrent_model("gru", 8, 16, 5, vocab=5, per_step=True, seed=0)
    vocab = tasks.CharVocab("abcde")
    a = tasks.sample_chars(model, vocab, "ab", 40, 1.0, seed=1)
    assert a == tasks.sample_chars(model, vocab, "ab", 40, 1.0, seed=1) and len(a) == 40 and set(a) <= set("abcde")
    cold = tasks.sample_chars(model, vocab, "ab", 200, 0.05, seed=2)
    hot = tasks.sample_chars(model, vocab, "ab", 200, 5.0, seed=2)
    assert len(set(cold)) <= len(set(hot))
    with pytest.raises(ValueError, match="temperature"):
        tasks.sample_chars(model, vocab, "ab", 5, 0.0)


def test_threads_option_leaves_the_thread_count_as_it_was():
    before = cli.set_threads(2)
    if before is None:
        pytest.skip("no way to read the OpenMP thread count in this build")
    try:
        assert cli.main(["train", "sine", "--quick", "--steps", "2", "--hidden", "4", "--no-progress",
                         "--threads", "1"]) == 0
        assert cli.set_threads(2) == 2
    finally:
        cli.set_threads(before)


def test_train_save_then_generate_from_the_checkpoint(monkeypatch, tmp_path, capsys):
    path = str(tmp_path / "chars.safetensors")
    assert cli.main(["train", "chars", "--quick", "--steps", "3", "--hidden", "8", "--no-progress",
                     "--save", path]) == 0
    tensors, meta = read_safetensors(path)
    assert "rnn.weight_hh_l0" in tensors and "embed.weight" in tensors
    capsys.readouterr()
    assert cli.main(["generate", "--checkpoint", path, "--length", "15", "--prime", "A "]) == 0
    assert capsys.readouterr().out.startswith("A ")


def test_bench_runs_end_to_end(tmp_path, capsys):
    """`gatecell bench` on tiny configurations: every framework runs, the tables are written."""
    pytest.importorskip("torch")
    md, js = tmp_path / "b.md", tmp_path / "b.json"
    assert cli.main(["bench", "--quick", "--threads", "1", "--configs", "lstm-6-2-3-4-1", "gru-6-1-3-4-1-bi",
                     "--json", str(js), "--markdown", str(md)]) == 0
    table = md.read_text()
    assert "LSTM 6 2 3 4 1" in table and "GRU 6 1 3 4 1 bi" in table
    results = json.loads(js.read_text())["results"]
    assert len(results) == 4 and all(r["ms"]["gatecell"] > 0 and r["ms"]["torch"] > 0 for r in results)
    record = json.loads(js.read_text())
    assert record["simd_path"] == gc.simd_path() and record["sgemm_gflops"]["1"] > 0


def test_bench_training_step_packs_like_a_training_loop():
    """The bench's training layer has its parameters held, as an optimizer holds them: every step
    packs the weights afresh, as in a real training loop; inference keeps its packs."""
    from gatecell import bench
    runner = bench.Runner(bench.Config.parse("lstm-5-2-3-16-1"), None, None, None)
    runner.frameworks["gatecell"]["train"]()
    assert runner.gc_train._kept_packs() is None
    runner.frameworks["gatecell"]["infer"]()
    assert runner.gc_infer._kept_packs() is not None


def test_time_gemm_computes_the_product_and_checks_its_arguments():
    """The bench's own-GEMM ceiling runs the kernels' GEMM: its C is a @ b; bad input raises."""
    from gatecell import _core
    rng = np.random.default_rng(4)
    for m, k, n in [(1, 1, 1), (7, 300, 33), (64, 513, 130)]:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        seconds, c = _core._time_gemm(a, b, 2)
        assert seconds >= 0 and c.shape == (m, n)
        np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4 * np.sqrt(k))
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"b: expected shape \(4, 2\)"):
        _core._time_gemm(a, np.ones((3, 2), np.float32), 1)
    with pytest.raises(TypeError, match="float32"):
        _core._time_gemm(a, np.ones((4, 2)), 1)
    with pytest.raises(ValueError, match="repeats"):
        _core._time_gemm(a, np.ones((4, 2), np.float32), 0)
    with pytest.raises(ValueError, match="2-D"):
        _core._time_gemm(np.ones(3, np.float32), a, 1)
