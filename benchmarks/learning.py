"""Does ETO learn? The base model, SFT and ETO iteration 1 on the same held-out tasks, over seeds,
with paired bootstrap intervals over tasks and seeds.

Runs a profile (``small``: 12 + 12 held-out ScienceWorld tasks; ``medium``: 64 + 64 ScienceWorld
tasks, 72 + 72 ALFWorld games, see configs/) once per seed through the stage functions (no
Dagster): SFT, its evaluation, one ETO iteration (exploration, pairs, DPO) and its evaluation; the
untrained base model is evaluated once (greedy, so the seed does not change it). Prints each
stage's wall time as it ends, then a table per seed, and per split:

    eto_gain_<split>=<mean> ci95=[<lo>,<hi>] n_tasks=<n> seeds=<k>   (ETO-1 minus SFT)
    sft_gain_<split>=...                                              (SFT minus the base model)

and whether each interval excludes zero. The interval is a paired bootstrap over tasks and seeds
(``eto_assets.stages.paired_gain``): every seed evaluates every policy on the same tasks.

The same numbers go to MLflow (``MLFLOW_TRACKING_URI``, else the local store): a parent run per
benchmark in the experiment ``eto-bench-learning`` with the gains and intervals, and a child run
per seed with its policies' rewards (per task, ``rewards.json``) and stage times, so versions of
the product can be compared. Seeds can be added later, in another session or on another machine
sharing the store: ``--add-to <parent run id> --seeds 3,4`` runs only the seeds the run lacks and
reports over all of them (refused unless profile, task, backend and DPO settings match).

Settings are chosen on the seen split only (``--sweep``: DPO learning rate x beta x epochs, each
scored on seen with the first seed, recorded in MLflow); unseen is reported, never tuned on. The
sweep shares that seed's SFT, exploration and pairs, and its winner is that seed's ETO policy;
``--sweep-only`` stops after the sweep. A stage whose output is already in ``--workdir`` is kept,
so an interrupted seed resumes and a sweep on a folder of an earlier run trains only the new
settings.

    make real-model
    python benchmarks/learning.py --profile medium --task sciworld --seeds 5 \\
        --base-model .eto/models/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from eto_assets.config import settings

if __name__ == "__main__":  # the entry point, before the imports below load the Hugging Face libraries
    settings.offline_environment()

from _stage_log import StageLog  # noqa: E402

from eto_assets import stages  # noqa: E402
from eto_assets.config.profile import Profile, check_profile_for_model, load_profile  # noqa: E402
from eto_assets.data.schemas import read_trajectories  # noqa: E402
from eto_assets.envs.pool import EnvironmentPool  # noqa: E402
from eto_assets.envs.registry import BenchmarkSources  # noqa: E402
from eto_assets.stages.evaluate import EVAL_SPLITS, EvalReport  # noqa: E402
from eto_assets.stages.layout import BASE_ITERATION  # noqa: E402
from eto_assets.stages.paired_gain import PairedGain, paired_gain  # noqa: E402
from resources.inference import InferenceResource  # noqa: E402

POLICIES = ("base", "sft", "eto-1")
EXPERIMENT = "eto-bench-learning"
Rewards = dict[str, dict[str, float]]  # split -> task id -> reward


def parse_seeds(text: str) -> list[int]:
    """``5`` is seeds 0-4; ``0,1,2,7`` is those seeds (``7,`` is seed 7 alone)."""
    seeds = [int(s) for s in text.split(",") if s.strip()] if "," in text else list(range(int(text)))
    if not seeds:
        raise SystemExit(f"--seeds {text}: no seeds to run (a count such as 5, or a list: 0,1,7 or 0,)")
    return seeds


def seeded(profile: Profile, seed: int, **dpo) -> Profile:
    """The profile with every seed set to ``seed`` (training order, initialisation, sampling) and
    ``dpo`` overrides (a sweep's learning rate, beta, epochs)."""
    return profile.model_copy(
        update={
            "sft": profile.sft.model_copy(update={"seed": seed}),
            "dpo": profile.dpo.model_copy(update={"seed": seed, **dpo}),
            "rollout": profile.rollout.model_copy(update={"seed": seed}),
            "tiny_model": profile.tiny_model.model_copy(update={"seed": seed}),
        }
    )


def task_rewards(layout, iteration: int) -> Rewards:
    """Per split, each held-out task's reward in the evaluation of ``iteration``."""
    return {
        split: {t.task_id: t.reward for t in read_trajectories(layout.eval_jsonl(iteration, split))}
        for split in EVAL_SPLITS
        if layout.eval_jsonl(iteration, split).exists()
    }


class Bench:
    """One benchmark's fixed inputs: the task, the base model, the backend, the shared folder
    holding the expert data and the base model's evaluation (the same for every seed).

    A stage whose output is already in the work folder is kept, not run again, so a seed cut off
    (a session's end) goes on where it stopped and a seed the sweep prepared only runs what is
    left. Each folder records the settings that made it (``bench.json``); a folder made with other
    settings is refused rather than mixed in."""

    def __init__(self, task: str, base_model: str, backend: InferenceResource, workdir: Path, log: StageLog):
        self.task, self.base_model, self.backend = task, base_model, backend
        self.workdir, self.log = workdir, log
        self.data_dir = settings.read_path("ETO_DATA_DIR")
        self.homes: dict[int, Path] = {}  # a seed's folder, where the sweep chose another

    def home(self, seed: int) -> Path:
        return self.homes.get(seed, self.workdir / f"seed-{seed}")

    def open(self, profile: Profile, home: Path, identity: dict | None = None):
        """The task run in ``home``, checked against (or stamped with) the settings that made it."""
        identity = identity if identity is not None else settings_of(profile)
        record = home / "bench.json"
        if not record.exists():
            home.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps(identity, indent=1, sort_keys=True))
        elif json.loads(record.read_text()) != identity:
            raise SystemExit(
                f"{home}: made with other settings than this benchmark's ({record}); "
                "use another --workdir or remove that folder"
            )
        return stages.open_task_run(self.task, profile, BenchmarkSources(home=home, data_dir=self.data_dir))

    def once(self, label: str, done: bool, work) -> None:
        if done:
            print(f"  {label:<{self.log.width}} kept from an earlier run", flush=True)
            return
        self.log(label, work)

    def base(self, profile: Profile, envs: EnvironmentPool) -> tuple[object, Rewards]:
        # the seeds differ in training only: the expert data and the base model's evaluation are shared
        run = self.open(profile, self.workdir / "shared", identity=shared_identity(profile))
        if not run.layout.eval_report(BASE_ITERATION).exists():
            self.log("expert data", lambda: stages.generate_expert_data(run, envs))
            self.log("base model", lambda: stages.build_base_model(run, self.base_model))
            self.log(
                "eval base",
                lambda: stages.evaluate_base_model(run, self.base_model, self.backend.open, envs),
            )
        return run, task_rewards(run.layout, BASE_ITERATION)

    def through_pairs(
        self, shared, profile: Profile, home: Path, envs: EnvironmentPool
    ) -> tuple[object, Rewards]:
        """SFT, its evaluation, exploration and pairs of one seed, the expert data copied from
        ``shared`` (:meth:`base`'s run); returns the run and SFT's rewards."""
        run = self.open(profile, home)
        layout = run.layout
        shutil.copytree(shared.layout.expert_dir, layout.expert_dir, dirs_exist_ok=True)
        self.log("base model", lambda: stages.build_base_model(run, self.base_model))
        trained = layout.policy_json(0).exists()
        self.once("sft", trained, lambda: stages.train_sft_policy(run, self.base_model))
        self.once("eval sft", evaluated(layout, 0), lambda: stages.evaluate(run, 0, self.backend.open, envs))
        explored = layout.pairs_jsonl(1).exists()
        self.once("explore", explored, lambda: stages.explore(run, 1, self.backend.open, envs))
        self.once("pairs", explored, lambda: stages.make_pairs(run, 1))
        return run, task_rewards(layout, 0)

    def eto(self, run, envs: EnvironmentPool, splits=EVAL_SPLITS) -> Rewards:
        layout = run.layout
        self.once("dpo", layout.policy_json(1).exists(), lambda: stages.train_dpo_policy(run, 1))
        self.once(
            "eval eto-1",
            evaluated(layout, 1, splits),
            lambda: stages.evaluate(run, 1, self.backend.open, envs, held_out=splits),
        )
        return task_rewards(layout, 1)

    def seed(self, profile: Profile, seed: int) -> dict[str, Rewards]:
        with EnvironmentPool() as envs:
            shared, base = self.base(profile, envs)
            run, sft = self.through_pairs(shared, profile, self.home(seed), envs)
            return {"base": base, "sft": sft, "eto-1": self.eto(run, envs)}


def settings_of(profile: Profile) -> dict:
    """What a seed's folder depends on: the profile's settings, whatever its name."""
    return profile.model_dump(mode="json", exclude={"name", "description"})


def shared_identity(profile: Profile) -> dict:
    """What the shared folder (expert data, the base model's evaluation) depends on: the profile
    without its training settings and seeds."""
    kept = settings_of(profile)
    for part in ("sft", "dpo", "tiny_model", "best_of_n", "rft", "selfplay", "step", "ipr", "rl"):
        kept.pop(part, None)
    kept["rollout"] = {k: v for k, v in kept.get("rollout", {}).items() if k != "seed"}
    return kept


def evaluated(layout, iteration: int, splits=EVAL_SPLITS) -> bool:
    """Whether ``iteration``'s evaluation report covers ``splits`` (a sweep's covers seen only)."""
    path = layout.eval_report(iteration)
    return path.exists() and set(splits) <= set(EvalReport.read(path).splits)


def fork(run, home: Path) -> None:
    """A new folder for another DPO setting of ``run``'s seed: everything up to the pairs,
    hard-linked (no copy of the checkpoints), none of the DPO policy or its evaluation."""

    def dpo_outputs(folder: str, names: list[str]) -> list[str]:
        here = Path(folder).resolve()
        if here != run.layout.iteration_dir(1).resolve():
            return ["bench.json"] if here == run.layout.home.resolve() else []
        return [n for n in names if not n.startswith(("exploration_", "preference_pairs"))]

    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(run.layout.home, home, copy_function=os.link, ignore=dpo_outputs)


def mean_of(rewards: dict[str, float]) -> float:
    return statistics.fmean(rewards.values()) if rewards else 0.0


class Trial(NamedTuple):
    """One DPO setting of the sweep: its seen rewards per task, its place in the grid, its folder."""

    seen: dict[str, float]
    position: int
    overrides: dict
    home: Path


def sweep(bench: Bench, profile: Profile, grid: list[dict], tracking, seed: int) -> dict:
    """DPO settings chosen on the seen split with ``seed`` (the benchmark's first): that seed's SFT,
    exploration and pairs once, in its own folder, then DPO and a seen-only evaluation per setting
    (the profile's own in the seed's folder, each other in a hard-linked fork of it, named by its
    settings). The winner is the best on seen, unless the profile's own setting is in the grid and
    the best does not beat it with a paired interval over the seen tasks above zero: then the
    profile's stays. The winner's folder becomes the seed's, so the seed then only evaluates it on
    unseen. Prints the winner's margin over the next, with its interval. Returns its overrides."""
    own = seeded(profile, seed)
    trials: list[Trial] = []
    own_trial = None  # the profile's own setting, when the grid has it
    with EnvironmentPool() as envs:
        shared, _ = bench.base(own, envs)
        run, sft = bench.through_pairs(shared, own, bench.home(seed), envs)
        print(f"sweep (seed {seed}): SFT seen {mean_of(sft['seen']):.3f}", flush=True)
        for i, overrides in enumerate(grid):
            trial_profile = seeded(profile, seed, **overrides)
            home = bench.home(seed)
            if trial_profile.dpo != own.dpo:
                named = "_".join(f"{k}={v}" for k, v in overrides.items())
                home = bench.workdir / "sweep" / f"seed-{seed}-{named}"
                if not (home / "bench.json").exists():
                    fork(run, home)
            seen = bench.eto(bench.open(trial_profile, home), envs, splits=("seen",))["seen"]
            trials.append(Trial(seen, i, overrides, home))
            if trial_profile.dpo == own.dpo:
                own_trial = trials[-1]
            print(f"sweep: {overrides} -> seen {mean_of(seen):.3f}", flush=True)
            tracking.sweep_child(overrides, mean_of(seen), mean_of(sft["seen"]))
    trials.sort(key=lambda t: (-mean_of(t.seen), t.position))  # a tie goes to the earlier setting
    print("\n| DPO setting | seen avg reward |\n|---|---|")
    for trial in trials:
        print(f"| {trial.overrides} | {mean_of(trial.seen):.3f} |")
    best = trials[0]
    if own_trial is not None and own_trial is not best:
        # the profile's setting stays unless another beats it beyond the noise of the seen tasks
        over_own = paired_gain({seed: own_trial.seen}, {seed: best.seen})
        print(f"{over_own.line('sweep_best_over_profile_seen')}  ({over_own.verdict()})")
        if over_own.low <= 0:
            print(f"sweep: {best.overrides} is not above the profile's own setting beyond noise: keeping it")
            best = own_trial
    print(f"sweep winner (seen only): {best.overrides}")
    runner_up = next((t for t in trials if t is not best), None)
    if runner_up is not None:
        margin = paired_gain({seed: runner_up.seen}, {seed: best.seen})
        print(f"{margin.line('sweep_margin_seen')}  ({margin.verdict()}; over {runner_up.overrides})")
        tracking.gains("sweep_margin_seen", margin)
    bench.homes[seed] = best.home
    return best.overrides


class Tracking:
    """The benchmark's MLflow parent run and its children (seeds, sweep settings)."""

    def __init__(self, args, profile: Profile) -> None:
        import mlflow

        from eto_assets.assets.tracking import ensure_store

        self.mlflow = mlflow
        uri = settings.tracking_uri() or f"sqlite:///{settings.home() / 'mlflow' / 'mlflow.db'}"
        (settings.home() / "mlflow").mkdir(parents=True, exist_ok=True)
        ensure_store(uri)
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(EXPERIMENT)
        self.uri = uri
        params = {
            "profile": profile.name, "task": args.task, "backend": args.backend,
            "base_model": args.base_model, "dpo_learning_rate": profile.dpo.learning_rate,
            "dpo_beta": profile.dpo.beta, "dpo_epochs": profile.dpo.num_train_epochs,
        }  # fmt: skip
        if args.add_to:
            self.parent = mlflow.start_run(run_id=args.add_to)
            self._check_same(params)
            return
        kind = "sweep" if getattr(args, "sweep_only", False) else "learning"
        self.parent = mlflow.start_run(run_name=f"{kind}-{profile.name}-{args.task}")
        mlflow.set_tags({"eto.kind": "benchmark", "eto.benchmark": "learning", "eto.task": args.task})
        mlflow.log_params(params)

    def _check_same(self, params: dict) -> None:
        """An added seed must be the same experiment: refuse a parent run of other settings."""
        logged = self.parent.data.params
        differ = [
            f"{k}: run has {logged.get(k)!r}, now {v!r}" for k, v in params.items() if logged.get(k) != str(v)
        ]
        if "dpo_chosen" in logged:
            differ.append(
                "its DPO settings were chosen by --sweep (put the winner in the profile, start anew)"
            )
        if differ:
            self.mlflow.end_run()
            raise SystemExit(
                f"--add-to {self.parent.info.run_id}: not the same benchmark ({'; '.join(differ)})"
            )

    def earlier_seeds(self) -> dict[int, dict[str, Rewards]]:
        """Per seed, the rewards the parent run's children recorded (``--add-to``; empty otherwise)."""
        children = self.mlflow.search_runs(
            experiment_ids=[self.parent.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.parent.info.run_id}'",
            output_format="list",
        )
        found = {}
        for child in (c for c in children if "eto.seed" in c.data.tags):
            seed = int(child.data.tags["eto.seed"])
            kept = {a.path for a in self.mlflow.artifacts.list_artifacts(run_id=child.info.run_id)}
            if "rewards.json" not in kept:
                self.mlflow.end_run()
                raise SystemExit(
                    f"--add-to {self.parent.info.run_id}: seed {seed}'s run {child.info.run_id} has no "
                    "per-task rewards (rewards.json; runs before they were kept): start a new run"
                )
            found[seed] = self.mlflow.artifacts.load_dict(f"{child.info.artifact_uri}/rewards.json")
        return found

    def seed_child(self, seed: int, results: dict[str, Rewards], stage_s: dict[str, float]) -> None:
        with self.mlflow.start_run(run_name=f"seed-{seed}", nested=True):
            self.mlflow.set_tag("eto.seed", str(seed))
            metrics = {
                f"{policy.replace('-', '')}_{split}_avg_reward": mean_of(rewards)
                for policy, by_split in results.items()
                for split, rewards in by_split.items()
            }
            metrics.update({f"wall_s/{stage.replace(' ', '_')}": s for stage, s in stage_s.items()})
            self.mlflow.log_metrics(metrics)
            self.mlflow.log_dict(results, "rewards.json")  # per task: what --add-to combines later

    def sweep_child(self, overrides: dict, seen: float, sft_seen: float) -> None:
        with self.mlflow.start_run(run_name=f"sweep-{overrides}", nested=True):
            self.mlflow.set_tag("eto.sweep", "dpo")
            self.mlflow.log_params({f"dpo_{k}": v for k, v in overrides.items()})
            self.mlflow.log_metrics({"eto1_seen_avg_reward": seen, "sft_seen_avg_reward": sft_seen})

    def gains(self, name: str, gain: PairedGain) -> None:
        self.mlflow.log_metrics(
            {name: gain.mean, f"{name}_ci95_low": gain.low, f"{name}_ci95_high": gain.high,
             f"{name}_n_tasks": gain.n_tasks, f"{name}_seeds": gain.seeds}
        )  # fmt: skip

    def end(self, wall_min: float) -> None:
        self.mlflow.log_metric("wall_min", wall_min)
        self.mlflow.end_run()
        print(f"MLflow: experiment {EXPERIMENT}, run {self.parent.info.run_id} in {self.uri}")


def stage_times(log: StageLog, since: int) -> dict[str, float]:
    totals: dict[str, float] = {}
    for label, peak in zip(log.labels[since:], log.peaks[since:], strict=True):
        totals[label] = totals.get(label, 0.0) + peak.wall_s
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="small")
    parser.add_argument("--task", default="sciworld")
    parser.add_argument("--base-model", default=settings.read("ETO_BASE_MODEL"))
    parser.add_argument("--seeds", default="3", help="a count (5: seeds 0-4) or a comma list (0,1,2,7)")
    parser.add_argument("--dtype", default=settings.inference_dtype())
    parser.add_argument("--backend", default=settings.backend(), help="ETO_BACKEND: transformers or vllm")
    parser.add_argument("--workdir", type=Path, default=None, help="keep every seed's artifacts here")
    parser.add_argument(
        "--sweep", action="store_true", help="choose DPO settings on seen (the first seed) first"
    )
    parser.add_argument(
        "--sweep-only",
        action="store_true",
        help="only the sweep: print the winner (with --workdir, a seed already run is reused)",
    )
    parser.add_argument(
        "--add-to",
        metavar="RUN_ID",
        help="add seeds to an earlier benchmark's MLflow parent run (same profile, task, backend, DPO "
        "settings) and report over all its seeds",
    )
    parser.add_argument("--sweep-lr", default="5e-7,1e-6,2e-6")
    parser.add_argument("--sweep-beta", default="0.1,0.5")
    parser.add_argument("--sweep-epochs", default="2")
    args = parser.parse_args()
    profile = load_profile(args.profile)
    seeds = parse_seeds(args.seeds)  # before any work: a bad list fails at once
    sweeping = args.sweep or args.sweep_only
    if args.add_to and sweeping:
        raise SystemExit("--add-to keeps the earlier run's DPO settings: leave out --sweep")
    check_profile_for_model(profile, args.base_model)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="eto-learning-"))
    log = StageLog()
    backend = InferenceResource(backend=args.backend, dtype=args.dtype)
    bench = Bench(args.task, args.base_model, backend, workdir, log)
    tracking = Tracking(args, profile)
    began = time.perf_counter()
    if sweeping:
        grid = [
            {"learning_rate": float(lr), "beta": float(beta), "num_train_epochs": int(epochs)}
            for lr, beta, epochs in itertools.product(
                args.sweep_lr.split(","), args.sweep_beta.split(","), args.sweep_epochs.split(",")
            )
        ]
        best = sweep(bench, profile, grid, tracking, seeds[0])
        profile = profile.model_copy(update={"dpo": profile.dpo.model_copy(update=best)})
        tracking.mlflow.log_params({"dpo_chosen": str(profile.dpo.model_dump())[:500]})
        if args.sweep_only:
            tracking.mlflow.set_tag("eto.sweep_only", "true")
            tracking.end((time.perf_counter() - began) / 60)
            return
    results = tracking.earlier_seeds()
    if results:
        print(f"run {args.add_to} already has seeds {sorted(results)}: those are not run again", flush=True)
    for seed in [s for s in seeds if s not in results]:
        started, first = time.perf_counter(), len(log.peaks)
        print(f"seed {seed}:", flush=True)
        results[seed] = bench.seed(seeded(profile, seed), seed)
        tracking.seed_child(seed, results[seed], stage_times(log, first))
        print(f"seed {seed}: {(time.perf_counter() - started) / 60:.1f} min", flush=True)

    seeds = sorted(results)
    tracking.mlflow.set_tag("eto.seeds", ",".join(map(str, seeds)))
    print(f"\n{args.task}, profile {profile.name}, base model {args.base_model}, seeds {seeds}\n")
    print("| seed | " + " | ".join(f"{p} {s}" for p in POLICIES for s in EVAL_SPLITS) + " |")
    print("|---|" + "---|" * (len(POLICIES) * len(EVAL_SPLITS)))
    for seed, by_policy in sorted(results.items()):
        cells = [f"{mean_of(by_policy[p].get(s, {})):.3f}" for p in POLICIES for s in EVAL_SPLITS]
        print(f"| {seed} | " + " | ".join(cells) + " |")
    print()
    for name, lower, upper in (("eto_gain", "sft", "eto-1"), ("sft_gain", "base", "sft")):
        for split in EVAL_SPLITS:
            gain = paired_gain(
                {s: r[lower][split] for s, r in results.items()},
                {s: r[upper][split] for s, r in results.items()},
            )
            print(f"{gain.line(f'{name}_{split}')}  ({gain.verdict()})")
            tracking.gains(f"{name}_{split}", gain)
    print(f"peak_rss_gb={max(p.process_gb for p in log.peaks):.2f}")
    print(f"peak_rss_environments_gb={max(p.children_gb for p in log.peaks):.2f}")
    wall = (time.perf_counter() - began) / 60
    print(f"wall_min={wall:.1f}")
    tracking.end(wall)


if __name__ == "__main__":
    main()
