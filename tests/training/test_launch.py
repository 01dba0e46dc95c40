"""The training launcher: the same spec runs in-process and as its own process (the path that
``accelerate launch`` takes on multi-GPU machines)."""

import json
import subprocess
import sys

import pytest

from eto_assets.config.training import TrainConfig
from eto_assets.data.schemas import write_jsonl
from eto_assets.training.launch import RESULT_FILE, TrainSpec, run_spec


def test_sft_spec_runs_as_a_separate_process(tiny_model_dir, expert_sample, tmp_path):
    path, book = tiny_model_dir
    data = tmp_path / "expert.jsonl"
    write_jsonl(data, expert_sample)
    book_path = tmp_path / "book.json"
    book_path.write_text(json.dumps(book.to_dict()))
    params = TrainConfig(learning_rate=1e-3, num_train_epochs=1, batch_size=2, per_device_train_batch_size=2)
    spec = TrainSpec("sft", str(path), str(data), str(book_path), str(tmp_path / "out"), params)
    spec_path = spec.write(tmp_path / "spec.json")
    subprocess.run([sys.executable, "-m", "eto_assets.training.launch", str(spec_path)], check=True)
    result = json.loads((tmp_path / "out" / RESULT_FILE).read_text())
    assert result["num_examples"] == len(expert_sample)
    assert result["metrics"]["train_loss"] > 0
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_unknown_algo_is_named(tmp_path):
    params = TrainConfig(learning_rate=1e-3, num_train_epochs=1, batch_size=1)
    spec = TrainSpec("ppo", "x", "x", str(tmp_path / "b.json"), str(tmp_path), params)
    (tmp_path / "b.json").write_text(json.dumps({"instruction": "i", "examples": {}}))
    with pytest.raises(ValueError, match="unknown algo 'ppo'"):
        run_spec(spec)
