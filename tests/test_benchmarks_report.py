"""benchmarks/report.py renders a results dict into markdown: tables, ratios, targets.

A tiny synthetic results dict with round numbers; no timings are taken here.
"""

import json

import pytest

from benchmarks import report
from zoo.report import replace_between_markers

PEAK = 100.0  # GFLOP/s
STEPS, BATCH = 10, 4


def _row(impl, mode, seconds, gflops):
    batch = 1 if mode == "latency" else BATCH
    return {"cell": "lstm", "steps": STEPS, "mode": mode, "batch": batch, "impl": impl,
            "seconds": seconds, "tokens_per_s": batch * STEPS / seconds, "gflops": gflops}


def _results():
    seconds = {  # (training, inference, latency) seconds per call
        "keras stock": (0.020, 0.010, 0.004),
        "zoo fast (default)": (0.008, 0.005, 0.001),
        "zoo fast (no XLA)": (0.016, 0.010, 0.002),
        "zoo fast, XLA loops only": (0.008, 0.005, 0.0015),
        "torch": (0.010, 0.004, 0.002),
    }
    rows = [_row(impl, mode, s, gflops=30.0 if impl == "zoo fast (default)" else 10.0)
            for impl, per_mode in seconds.items() for mode, s in zip(report.MODES, per_mode)]
    translation = [
        {"model": "mt", "task": "translation", "workload": workload, "variant": variant,
         "seconds": s, "items_per_s": 8 / s}
        for workload, variant, s in [("greedy", "stock", 1.0), ("greedy", "zoo fast", 0.5),
                                     ("beam-5", "stock", 2.0), ("beam-5", "zoo fast", 1.5),
                                     ("greedy, batch 1", "stock", 4.0),
                                     ("beam-5, batch 1", "stock", 6.0)]]
    broken = {"model": "broken", "task": "tagging", "error": "ValueError: boom"}
    return {
        "machine": {"date": "2026-01-01 00:00:00 UTC", "cpu": "Test CPU", "cpus": 2,
                    "platform": "Linux", "python": "3.11", "tensorflow": "2.21.0",
                    "keras": "3.15.1", "torch": "2.13.0+cpu", "torch_threads": 2,
                    "load_average": [0.5, 0.25, 0.125], "load_average_end": [1.0, 0.5, 0.25]},
        "args": {"quick": "False", "sections": "peak,recurrent,models,threads",
                 "repetitions": "7", "min_seconds": "0.3", "intra_op_threads": "0",
                 "inter_op_threads": "0", "output": "/tmp/x.json"},
        "peak": {"peak_gflops": PEAK, "peak_gflops_start": PEAK / 2, "peak_gflops_end": PEAK,
                 "matmuls": [{"library": "tf", "shape": "square 2048", "seconds": 2.0,
                              "gflops": PEAK / 2}],
                 "matmuls_end": [{"library": "tf", "shape": "square 2048", "seconds": 1.0,
                                  "gflops": PEAK}]},
        "recurrent": {"sizes": {"batch": BATCH}, "rows": rows},
        "models": {"items_per_call": 8, "rows": translation + [broken]},
        "threads": {"default": [
            {"mode": "training", "impl": "torch", "seconds": 0.010},
            {"mode": "training", "impl": "zoo fast (default)", "seconds": 0.020}]},
    }


def test_recurrent_table_has_rates_ratios_and_percent_of_peak():
    table = report.recurrent_tables(_results())
    assert "**LSTM, T=10**" in table
    # training 40 tokens / 0.008 s, 0.010 / 0.008 vs torch, 30 of 100 GFLOP/s;
    # inference 0.004 / 0.005 vs torch; latency 1 ms, 0.002 / 0.001 vs torch.
    assert ("| **zoo fast (default)** | 5,000 | 1.25x | 30.0% | 8,000 | 0.80x | 30.0% "
            "| 1.00 | 2.00x | 30.0% |") in table
    assert "| torch | 4,000 | 1.00x | 10.0% |" in table
    assert "| keras stock | 2,000 | 0.50x |" in table


def test_percent_of_peak_uses_the_peak_measured_alongside():
    results = _results()
    for row in results["recurrent"]["rows"]:
        row["peak_alongside_gflops"] = 50.0 if row["mode"] == "training" else None
    table = report.recurrent_tables(results)
    # training 30 GFLOP/s of the 50 measured alongside; the others of the run's peak (100)
    assert ("| **zoo fast (default)** | 5,000 | 1.25x | 60.0% | 8,000 | 0.80x | 30.0% "
            "| 1.00 | 2.00x | 30.0% |") in table
    assert "Matmul peak measured alongside (GFLOP/s): training 50.0." in table
    assert "60.0% met" in report.targets_table(results)


def test_options_table_compares_each_option_with_its_alternative():
    table = report.options_table(_results())
    native = next(line for line in table.splitlines() if line.startswith("| native loops"))
    assert native.endswith("| LSTM | 1.00x | 1.00x | 1.50x |")
    xla = next(line for line in table.splitlines() if line.startswith("| XLA-compiled loops"))
    assert xla.endswith("| LSTM | 2.00x | 2.00x | 1.33x |")
    stock = next(line for line in table.splitlines()
                 if line.startswith("| the default fast kernel vs the stock layer |"))
    assert stock.endswith("| LSTM | 2.50x | 2.00x | 4.00x |")
    missing = report.not_measured_options(_results())
    assert any("BlockLSTMV2" in m for m in missing)  # no fused-kernel rows in this dict


def test_targets_met_and_not_met():
    table = report.targets_table(_results())
    lines = table.splitlines()
    assert "1.25x met" in next(line for line in lines if line.startswith("| training tokens/s"))
    assert "0.80x **not met**" in next(line for line in lines if line.startswith("| inference"))
    assert "2.00x met" in next(line for line in lines if line.startswith("| batch-1 latency"))
    assert "30.0% **not met**" in next(line for line in lines if "% of the measured" in line)
    assert "`mt` (stock, `translate`'s batches): 2.00x, met" in table
    assert "`mt` (zoo fast, `translate`'s batches): 3.00x, **not met**" in table
    assert "`mt` (stock, one sentence per call): 1.50x, met" in table
    assert "4 of 7 target checks met" in table


def test_peak_is_the_best_of_the_start_and_the_end_of_the_run():
    text = report.peak_table(_results())
    assert "| tf | square 2048 | 50.0 |" in text
    assert "| tf | square 2048 (end of run) | 100.0 |" in text
    assert "**100.0 GFLOP/s**, the best of the start of the run (50.0) and its end (100.0)" in text


def test_missing_sections_are_reported_not_invented():
    results = _results()
    results["models"]["rows"] = [r for r in results["models"]["rows"] if r["task"] != "translation"]
    del results["threads"]
    text = report.render(results)
    assert "beam-5 <= 2.5x greedy per sentence: **not measured**" in text
    assert "No classification, translation, captioning model" in text
    assert "Not measured in this run" in text
    assert "skipped: ValueError: boom" in text


def test_models_and_threads_tables():
    models = report.models_table(_results())
    assert "| `mt` | translation | greedy | 8.0 | 16.0 | 2.00x |" in models
    threads = report.threads_table(_results())
    assert "| training | default | 10.00 | 20.00 | 0.50x |" in threads


def test_machine_block_names_the_command_and_the_load():
    block = report.machine_block(_results())
    assert "`python -m benchmarks.run --sections peak,recurrent,models,threads`" in block
    assert "at start: 0.50, 0.25, 0.12" in block


def test_main_rewrites_only_the_marked_block(tmp_path):
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_results()))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{report.START}\nstale\n{report.END}\n\nprose after\n")
    report.main([str(results), "--readme", str(readme)])
    text = readme.read_text()
    assert text.startswith("intro\n\n" + report.START)
    assert text.endswith(report.END + "\n\nprose after\n")
    assert "stale" not in text and "1.25x met" in text
    report.main([str(results), "--readme", str(readme)])  # idempotent
    assert readme.read_text() == text


def test_missing_markers_are_an_error():
    with pytest.raises(ValueError, match="markers not found"):
        replace_between_markers("no markers here", report.START, report.END, "body")


def test_chart_of_speed_vs_torch(tmp_path):
    path = tmp_path / report.CHART
    assert report.plot_recurrent(_results(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert f"![speed vs torch per mode]({report.CHART})" in report.render(_results())
    no_rows = {**_results(), "recurrent": {"rows": []}}
    assert not report.plot_recurrent(no_rows, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
    assert report.CHART not in report.render(no_rows)
