"""WebShop environments hosted in worker processes behave exactly like local ones."""

import os
import signal
import threading

import pytest

from eto_assets.envs.processes import EnvWorkerError, EnvWorkerPool


@pytest.fixture(scope="module")
def pool(bench):
    with EnvWorkerPool(bench.make_env, workers=2) as workers:
        yield workers


def play(env, task, actions):
    out = [env.reset(task)]
    for action in actions:
        result = env.step(action)
        out.append(result)
        if result.done:
            break
    return out


def test_remote_episodes_equal_local_ones_and_run_on_two_workers(bench, pool):
    from eto_assets.envs.webshop.oracle import plan_actions

    tasks = bench.tasks("seen")[:2]
    local = bench.make_env()
    plans = [plan_actions(local.world, bench.world.catalog.goals[t.payload["goal_index"]], 10) for t in tasks]
    expected = [play(local, t, p) for t, p in zip(tasks, plans, strict=True)]
    local.close()
    remote = [pool.make_env(), pool.make_env()]
    assert remote[0].worker_pid != remote[1].worker_pid
    got: list = [None, None]

    def run(k: int) -> None:
        got[k] = play(remote[k], tasks[k], plans[k])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == expected
    assert expected[0][-1].reward == 1.0
    for env in remote:
        env.close()


def test_worker_errors_name_the_call_and_carry_the_traceback(pool):
    env = pool.make_env()
    with pytest.raises(EnvWorkerError, match=r"(?s)step of task .*failed in environment worker.*Traceback"):
        env.step("search[shoes]")  # before any reset: the engine refuses inside the worker
    env.close()


def test_a_killed_worker_gives_a_clear_error_and_close_stops_workers(bench):
    pool = EnvWorkerPool(bench.make_env, workers=1)
    env = pool.make_env()
    [pid] = pool.pids
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(EnvWorkerError, match="died"):
        env.reset(bench.tasks("seen")[0])
    pool.close()
    pool.close()  # twice is fine
    assert not pool._workers[0].process.is_alive()


def test_rollout_environments_come_from_worker_processes(bench):
    from eto_assets.envs.pool import EnvironmentPool
    from eto_assets.envs.processes import RemoteEnv

    with EnvironmentPool(processes=1) as pool:
        env = pool.acquire(bench, rollouts=True)
        assert isinstance(env, RemoteEnv) and env.worker_pid != os.getpid()
        pool.release(bench, env, rollouts=True)
        assert pool.acquire(bench, rollouts=True) is env  # kept warm for the next stage
        pool.release(bench, env, rollouts=True)
        worker = pool._workers[f"{bench.key}@workers"]._workers[0].process
    assert not worker.is_alive()  # closing the pool stops its workers
    with EnvironmentPool(processes=0) as local:
        env = local.acquire(bench, rollouts=True)
        assert not isinstance(env, RemoteEnv)
        local.release(bench, env, rollouts=True)
