"""The ETO asset graph for N iterations. Dagster forbids cycles, so the loop is unrolled into asset
keys: iteration k explores with the policy of iteration k-1, pairs against the expert, trains DPO
from that policy (also the frozen reference) and evaluates the result."""

from dagster import AssetKey, AssetsDefinition

from eto_assets import stages
from eto_assets.assets.stage_asset import stage_asset
from eto_assets.stages.layout import BASE_ITERATION
from jobs import fingerprint

EXPERT = AssetKey("expert_trajectories")
BASE_EVAL = AssetKey.from_user_string(fingerprint.BASE_EVAL)


def policy_key(k: int) -> AssetKey:
    return AssetKey("sft_checkpoint") if k == 0 else AssetKey([f"iteration_{k}", "dpo_checkpoint"])


def iteration_key(k: int, name: str) -> AssetKey:
    return AssetKey([f"iteration_{k}", name])


def expert_asset(n: int) -> AssetsDefinition:
    return stage_asset(
        name="expert_trajectories", stage="expert", iteration=0, graph_iterations=n, group="expert",
        deps=[], kinds={"python", "mlflow"},
        description="Expert trajectories (replayed through the real environment, failed replays dropped, "
        "or imported from an ETO-layout SFT file), ETO's splits, and the prompt book. Partitions: sciworld "
        "(needs Java 17; ETO's split lists from the data folder), alfworld (needs the ALFWorld games in "
        "the data folder, ETO_DATA_DIR), webshop (generated catalog; the upstream one from the data folder).",
        run_stage=lambda run, tools: stages.generate_expert_data(run, tools.envs),
    )  # fmt: skip


def sft_asset(n: int) -> AssetsDefinition:
    return stage_asset(
        name="sft_checkpoint", stage="sft", iteration=0, graph_iterations=n, group="iteration_0",
        deps=[EXPERT], kinds={"pytorch", "mlflow"},
        description="SFT (behavioural cloning) of the base model on the expert trajectories, loss on agent "
        "turns only. With base_model='tiny' the base model is built here from the expert data.",
        run_stage=lambda run, tools: stages.train_sft_policy(
            run, tools.settings.base_model, tools.settings.accelerate_config
        ),
    )  # fmt: skip


def eval_asset(k: int, n: int) -> AssetsDefinition:
    return stage_asset(
        name="eval_report", stage="eval", iteration=k, graph_iterations=n, group=f"iteration_{k}",
        key_prefix=f"iteration_{k}", deps=[policy_key(k)], kinds={"python", "mlflow"},
        description=f"Greedy evaluation of the iteration-{k} policy on the held-out seen/unseen splits.",
        run_stage=lambda run, tools: stages.evaluate(run, k, tools.inference.open, tools.envs),
    )  # fmt: skip


def base_eval_asset(n: int) -> AssetsDefinition:
    return stage_asset(
        name=BASE_EVAL.path[-1], key_prefix=BASE_EVAL.path[0], stage="eval", iteration=BASE_ITERATION,
        graph_iterations=n, group="base_model", deps=[EXPERT, policy_key(0)], kinds={"python", "mlflow"},
        description="Greedy evaluation of the untrained base model on the same held-out tasks and prompts "
        "(profile setting evaluate_base_model; a no-op otherwise): the baseline for SFT and ETO. Runs after "
        "SFT, which builds the tiny base model.",
        run_stage=lambda run, tools: stages.evaluate_base_model(
            run, tools.settings.base_model, tools.inference.open, tools.envs
        ),
        skip=lambda run: None if run.profile.evaluate_base_model
        else f"profile {run.profile.name!r} does not evaluate the base model (evaluate_base_model: false)",
    )  # fmt: skip


def iteration_assets(k: int, n: int) -> list[AssetsDefinition]:
    if k < 1:
        raise ValueError("ETO iterations are numbered from 1 (iteration 0 is SFT)")
    common = dict(iteration=k, graph_iterations=n, group=f"iteration_{k}", key_prefix=f"iteration_{k}")
    explore = stage_asset(
        name="exploration_rollouts", stage="explore", **common,
        deps=[policy_key(k - 1), EXPERT], kinds={"python", "mlflow"},
        description=f"The iteration-{k - 1} policy plays every training instruction (1-shot prompt); "
        "each finished episode is appended at once, so a rerun resumes.",
        run_stage=lambda run, tools: stages.explore(run, k, tools.inference.open, tools.envs),
    )  # fmt: skip
    pairs = stage_asset(
        name="preference_pairs", stage="pairs", **common,
        deps=[iteration_key(k, "exploration_rollouts"), EXPERT], kinds={"python", "mlflow"},
        description="Expert vs explored trajectory of the same instruction; higher reward chosen, ties "
        "dropped, rejected cut to the chosen length + 10 messages. Also exported in ETO's DPO JSON layout.",
        run_stage=lambda run, tools: stages.make_pairs(run, k),
    )  # fmt: skip
    dpo = stage_asset(
        name="dpo_checkpoint", stage="dpo", **common,
        deps=[iteration_key(k, "preference_pairs"), policy_key(k - 1)], kinds={"pytorch", "mlflow"},
        description=f"DPO on the iteration-{k} pairs from the iteration-{k - 1} policy, which is also the "
        "frozen reference; only action tokens count in the log-probabilities.",
        run_stage=lambda run, tools: stages.train_dpo_policy(run, k, tools.settings.accelerate_config),
    )  # fmt: skip
    return [explore, pairs, dpo, eval_asset(k, n)]


def summary_asset(n: int) -> AssetsDefinition:
    return stage_asset(
        name="iteration_summary", stage="summary", iteration=0, graph_iterations=n, group="report",
        deps=[iteration_key(k, "eval_report") for k in range(n + 1)], kinds={"python", "mlflow"},
        description="Reward and success rate by iteration, the best iteration marked (by the seen split); "
        "the best checkpoint gets the 'best' alias in the MLflow model registry.",
        run_stage=lambda run, tools: stages.summarize_iterations(run.layout, n), mlflow_run=False,
    )  # fmt: skip


def comparison_asset(n: int) -> AssetsDefinition:
    return stage_asset(
        name="iteration_comparison", stage="compare", iteration=0, graph_iterations=n, group="report",
        deps=[BASE_EVAL, *(iteration_key(k, "eval_report") for k in range(n + 1))],
        kinds={"python", "mlflow"},
        description="Every policy side by side (the base model where evaluated, held-out reward and "
        "success per split, steps, pairs, training loss, wall time) as CSV/Markdown, with plots: "
        "reward by iteration, the efficiency curve (mean reward reached by step t) and explored "
        "rewards with pair counts.",
        run_stage=lambda run, tools: stages.compare_iterations(run.layout, n),
    )  # fmt: skip


def build_assets(n: int) -> list[AssetsDefinition]:
    """Expert data, SFT, the base model's and SFT's evaluations, N unrolled iterations, the
    summary and the comparison."""
    assets = [expert_asset(n), sft_asset(n), base_eval_asset(n), eval_asset(0, n)]
    for k in range(1, n + 1):
        assets.extend(iteration_assets(k, n))
    assets.extend([summary_asset(n), comparison_asset(n)])
    return assets
