"""Does ETO learn? Base model, SFT and ETO iteration 1 on the same held-out tasks, over seeds.

Runs a profile (default ``small``: SmolLM2-135M-Instruct on ScienceWorld, see configs/small.yaml)
once per seed through the stage functions (no Dagster), evaluates the untrained base model, the
SFT policy and the ETO iteration-1 policy on the same seen and unseen tasks, and prints a table
(mean and spread over seeds) and two lines:

    sft_gain=<SFT minus base, unseen average reward, mean over seeds>
    eto_gain=<ETO iteration 1 minus SFT, unseen average reward, mean over seeds>

Settings are chosen on the seen split only; unseen is reported, never tuned on.

    make real-model
    python benchmarks/learning.py --base-model .eto/models/smollm2-135m-instruct --seeds 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from eto_assets.config import settings

if __name__ == "__main__":  # the entry point, before the imports below load the Hugging Face libraries
    settings.offline_environment()

from _stage_log import StageLog  # noqa: E402

from eto_assets import stages  # noqa: E402
from eto_assets.agent.backends import load_backend  # noqa: E402
from eto_assets.config.profile import Profile, check_profile_for_model, load_profile  # noqa: E402
from eto_assets.envs.pool import EnvironmentPool  # noqa: E402
from eto_assets.envs.registry import BenchmarkSources  # noqa: E402
from eto_assets.stages.evaluate import EVAL_SPLITS  # noqa: E402
from eto_assets.stages.layout import BASE_ITERATION  # noqa: E402

POLICIES = ("base", "sft", "eto-1")


def seeded(profile: Profile, seed: int) -> Profile:
    """The profile with every seed set to ``seed`` (training order, initialisation, sampling)."""
    return profile.model_copy(
        update={
            "sft": profile.sft.model_copy(update={"seed": seed}),
            "dpo": profile.dpo.model_copy(update={"seed": seed}),
            "rollout": profile.rollout.model_copy(update={"seed": seed}),
            "tiny_model": profile.tiny_model.model_copy(update={"seed": seed}),
        }
    )


def one_seed(
    profile: Profile, task: str, base_model: str, home: Path, dtype: str, shared: Path, log: StageLog
) -> dict[str, dict[str, float]]:
    """SFT, its evaluation, one ETO iteration and its evaluation for one seed. The expert data and
    the untrained model's evaluation do not depend on the seed (replayed gold paths, greedy
    decoding), so they are made once, in ``shared``, and reused."""
    data_dir = settings.read_path("ETO_DATA_DIR")
    open_backend = lambda path: load_backend("transformers", path, dtype=dtype)  # noqa: E731
    scores: dict[str, dict[str, float]] = {}
    with EnvironmentPool() as envs:
        base_run = stages.open_task_run(task, profile, BenchmarkSources(home=shared, data_dir=data_dir))
        base_report = base_run.layout.eval_report(BASE_ITERATION)
        if not base_report.exists():
            log("expert data", lambda: stages.generate_expert_data(base_run, envs))
            log("base model", lambda: stages.build_base_model(base_run, base_model))
            log("eval base", lambda: stages.evaluate_base_model(base_run, base_model, open_backend, envs))
        scores["base"] = stages.EvalReport.read(base_report).metrics()
        run = stages.open_task_run(task, profile, BenchmarkSources(home=home, data_dir=data_dir))
        shutil.copytree(base_run.layout.expert_dir, run.layout.expert_dir, dirs_exist_ok=True)
        log("base model", lambda: stages.build_base_model(run, base_model))
        log("sft", lambda: stages.train_sft_policy(run, base_model))
        scores["sft"] = log("eval sft", lambda: stages.evaluate(run, 0, open_backend, envs)).metrics
        log("explore", lambda: stages.explore(run, 1, open_backend, envs))
        log("pairs", lambda: stages.make_pairs(run, 1))
        log("dpo", lambda: stages.train_dpo_policy(run, 1))
        scores["eto-1"] = log("eval eto-1", lambda: stages.evaluate(run, 1, open_backend, envs)).metrics
    return scores


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="small")
    parser.add_argument("--task", default="sciworld")
    parser.add_argument("--base-model", default=settings.read("ETO_BASE_MODEL"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--dtype", default=settings.inference_dtype())
    parser.add_argument("--workdir", type=Path, default=None, help="keep every seed's artifacts here")
    args = parser.parse_args()
    profile = load_profile(args.profile)
    check_profile_for_model(profile, args.base_model)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="eto-learning-"))
    results: list[dict[str, dict[str, float]]] = []
    log = StageLog()
    began = time.perf_counter()
    for seed in range(args.seeds):
        started = time.perf_counter()
        print(f"seed {seed}:", flush=True)
        home = workdir / f"seed-{seed}"
        results.append(
            one_seed(
                seeded(profile, seed), args.task, args.base_model, home, args.dtype, workdir / "shared", log
            )
        )
        print(f"seed {seed}: {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    print(f"\n{args.task}, profile {profile.name}, base model {args.base_model}, {args.seeds} seed(s)\n")
    print("| policy | " + " | ".join(f"{s} avg reward" for s in EVAL_SPLITS) + " |")
    print("|---|" + "---|" * len(EVAL_SPLITS))
    for policy in POLICIES:
        cells = [spread([r[policy].get(f"eval_{s}_avg_reward", 0.0) for r in results]) for s in EVAL_SPLITS]
        print(f"| {policy} | " + " | ".join(cells) + " |")

    def unseen(policy: str) -> list[float]:
        return [r[policy].get("eval_unseen_avg_reward", 0.0) for r in results]

    print(f"\nsft_gain={statistics.fmean(unseen('sft')) - statistics.fmean(unseen('base')):.4f}")
    print(f"eto_gain={statistics.fmean(unseen('eto-1')) - statistics.fmean(unseen('sft')):.4f}")
    print(f"peak_rss_gb={max(p.process_gb for p in log.peaks):.2f}")
    print(f"peak_rss_environments_gb={max(p.children_gb for p in log.peaks):.2f}")
    print(f"wall_min={(time.perf_counter() - began) / 60:.1f}")


if __name__ == "__main__":
    main()
