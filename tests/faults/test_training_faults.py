"""Training that survives a kill, and checkpoints that are never half-written."""

import json
import signal
import subprocess
import sys
import time

from eto_assets.config.training import TrainConfig
from eto_assets.data.files import publish_dir, staging_dir
from eto_assets.data.schemas import write_jsonl
from eto_assets.training.common import last_checkpoint, work_dir
from eto_assets.training.launch import RESULT_FILE, TrainSpec


def _spec(tmp_path, tiny_model_dir, expert_sample, **params):
    path, book = tiny_model_dir
    data = tmp_path / "expert.jsonl"
    write_jsonl(data, expert_sample)
    book_path = tmp_path / "book.json"
    book_path.write_text(json.dumps(book.to_dict()))
    config = TrainConfig(learning_rate=1e-3, batch_size=2, per_device_train_batch_size=2, **params)
    spec = TrainSpec("sft", str(path), str(data), str(book_path), str(tmp_path / "out"), config)
    return spec.write(tmp_path / "spec.json")


def test_sft_killed_after_a_checkpoint_resumes_from_it(tiny_model_dir, expert_sample, tmp_path):
    spec = _spec(tmp_path, tiny_model_dir, expert_sample, num_train_epochs=40, save_steps=4)
    out, work = tmp_path / "out", work_dir(tmp_path / "out")
    cmd = [sys.executable, "-m", "eto_assets.training.launch", str(spec)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while last_checkpoint(work) is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = last_checkpoint(work)
    assert first is not None, "a checkpoint was saved before the kill"
    assert not (out / RESULT_FILE).exists()  # no final checkpoint yet
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = json.loads((out / RESULT_FILE).read_text())
    resumed = int(result["metrics"]["resumed_from_step"])
    assert resumed >= 4 and resumed % 4 == 0
    assert result["log_history"][-1]["step"] == 80  # 2 examples / batch 2 x 40 epochs
    assert (out / "model.safetensors").is_file() and not work.exists()


def test_a_changed_run_does_not_resume_anothers_checkpoints(tiny_model_dir, expert_sample, tmp_path):
    from eto_assets.training.common import prepare_run

    out = tmp_path / "out"
    prepare_run(out, {"run": 1})
    fake = work_dir(out) / "checkpoint-4"
    fake.mkdir()
    (fake / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    assert prepare_run(out, {"run": 1}) == fake
    assert prepare_run(out, {"run": 2}) is None and not fake.exists()


def test_a_torn_checkpoint_is_skipped(tmp_path):
    for step, state in ((2, {"global_step": 2}), (4, None)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state:
            (folder / "trainer_state.json").write_text(json.dumps(state))
    assert last_checkpoint(tmp_path).name == "checkpoint-2"


def test_a_folder_is_replaced_only_once_the_new_one_is_complete(tmp_path):
    final = tmp_path / "ckpt"
    final.mkdir()
    (final / "model.safetensors").write_text("old")
    staging = staging_dir(final)
    staging.mkdir()
    (staging / "model.safetensors").write_text("half")
    # a kill here leaves the old checkpoint in place, untouched
    assert (final / "model.safetensors").read_text() == "old"
    (staging / "model.safetensors").write_text("new")
    publish_dir(staging, final)
    assert (final / "model.safetensors").read_text() == "new" and not staging.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
