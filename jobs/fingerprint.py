"""What a task's graph depends on from outside the project: the base model and the expert data
source. The sensor reruns a task when this fingerprint changes."""

import hashlib
import json
from pathlib import Path

from eto_assets.config.profile import Profile

# Small files that identify a model folder or a data file without hashing gigabytes of weights.
MODEL_FILES = ("config.json", "tokenizer_config.json", "generation_config.json")


def _file_identity(path: Path) -> str:
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def path_identity(value: str) -> str:
    """A setting's value, plus the identity of the file or model folder it names (if any)."""
    path = Path(value).expanduser()
    if path.is_file():
        return f"{value}|{_file_identity(path)}"
    if path.is_dir():
        parts = [_file_identity(p) for p in sorted(path.iterdir()) if p.is_file()]
        return f"{value}|" + ",".join(parts)
    return value


def input_fingerprint(base_model: str, profile: Profile, task: str) -> str:
    """Base model setting and the profile's expert-data settings for ``task``, with their files."""
    expert = {k: v for k, v in profile.flat_params().items() if k.startswith("expert")}
    record = {
        "base_model": path_identity(base_model),
        "expert": {k: path_identity(v) for k, v in sorted(expert.items())},
        "scope": profile.scope(task).model_dump(),
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
