"""The `zoo` command line, in process (fast) and once through the console script."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from zoo import cli, registry


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_models_and_architectures(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and "text-cnn" in out and "textcnn-trec" in out
    code, out, _ = run(capsys, "list", "--json", "--task", "classification")
    rows = json.loads(out)
    assert rows and all(r["task"] == "classification" for r in rows)


def test_unknown_model_is_a_clear_error(capsys):
    code, _, err = run(capsys, "info", "textcnn-tre")
    assert code == 1 and "Did you mean: textcnn-trec" in err


def test_bad_arguments_exit_with_usage(capsys):
    with pytest.raises(SystemExit):
        cli.main(["predict"])
    with pytest.raises(SystemExit):
        cli.main(["list", "--bogus"])


def _trained(task=None):
    specs = registry.pretrained(task, trained_only=True)
    return specs[0] if specs else None


def test_info_prints_the_card(capsys):
    spec = _trained()
    if spec is None:
        pytest.skip("no pretrained model in saved_models/")
    code, out, _ = run(capsys, "info", spec.name)
    info = json.loads(out)
    assert code == 0 and info["card"]["sha256"] and info["trained"] is True


def test_evaluate_json_reproduces_the_card(capsys):
    spec = _trained("classification")
    if spec is None:
        pytest.skip("no pretrained classifier in saved_models/")
    code, out, _ = run(capsys, "evaluate", spec.name, "--json")
    metrics = json.loads(out.strip().splitlines()[-1])
    from zoo.saving import read_card

    card = read_card(spec.directory)
    assert code == 0 and metrics[spec.metric] == pytest.approx(card["metrics"][spec.metric], abs=0.01)


def test_predict_prints_readable_results(capsys):
    spec = _trained("classification")
    if spec is None:
        pytest.skip("no pretrained classifier in saved_models/")
    code, out, _ = run(capsys, "predict", spec.name, "a gorgeous , witty film", "")
    assert code == 0 and "->" in out


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "zoo"  # installed beside the venv's python
    assert exe.exists(), "the `zoo` console script is not installed"
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "zoo evaluate" in result.stdout
