"""Navigation, invalid and unavailable actions, the step limit and the purchase, through the real env."""

from __future__ import annotations

import dataclasses

import pytest

from eto_assets.envs.base import INVALID_FORMAT_OBSERVATION, Environment, TaskInstance, format_observation
from eto_assets.envs.webshop.oracle import search_query
from eto_assets.envs.webshop.reward import fuzzy_match, purchase_reward


@pytest.fixture(scope="module")
def task(bench) -> TaskInstance:
    """A test task whose product has two option groups."""
    catalog = bench.world.catalog
    for candidate in bench.tasks("seen"):
        goal = catalog.goals[candidate.payload["goal_index"]]
        if len(catalog.by_asin[goal.asin].options) >= 2:
            return candidate
    raise AssertionError("no test goal with two option groups")


def _search(env) -> list[str]:
    """Search the instruction; return the asins shown on the first results page."""
    env.step(f"search[{search_query(env.goal.instruction_text)}]")
    return [c.upper() for c in env.page.clickables if c.startswith("b0")]


def test_env_satisfies_protocol(env):
    assert isinstance(env, Environment)


def test_reset_shows_the_search_page(env, task):
    first = env.reset(task)
    assert first == f"WebShop [SEP] Instruction: [SEP] {env.goal.instruction_text} [SEP] Search"
    assert "price lower than" in first


def test_results_paging(env, task):
    env.reset(task)
    shown = _search(env)
    assert len(shown) == 10 and env.page.kind == "results"
    assert "Page 1 (Total results: 50) [SEP] Next > [SEP]" in env.page.text
    page2 = env.step("click[Next >]")
    assert "Page 2 (Total results: 50) [SEP] < Prev [SEP] Next >" in page2.observation
    assert not set(shown) & {c.upper() for c in env.page.clickables}
    back = env.step("click[< Prev]")
    assert "Page 1 (Total results: 50)" in back.observation
    for _ in range(5):
        last = env.step("click[next >]")  # Next > stays offered past the last page, as in WebShop
    assert "Page 6 (Total results: 50) [SEP] < Prev [SEP] Next >" in last.observation
    assert not last.done


def test_item_page_options_and_sub_pages(env, task):
    env.reset(task)
    asin = env.goal.asin
    shown = _search(env)
    assert asin in shown
    item = env.step(f"click[{asin.lower()}]")  # product ids are matched case-insensitively
    product = env.world.catalog.by_asin[asin]
    assert env.page.kind == "item" and product.title in item.observation
    (group_a, values_a), (group_b, values_b) = list(product.options.items())[:2]
    env.step(f"click[{values_a[-1]}]")
    env.step(f"click[{values_b[0]}]")
    assert env.selected_options == {group_a: values_a[-1], group_b: values_b[0]}
    features = env.step("click[Features]")
    assert env.page.kind == "sub" and product.bullet_points[0] in features.observation
    env.step("click[< Prev]")  # back to the item, options kept
    assert env.page.kind == "item" and env.selected_options == {group_a: values_a[-1], group_b: values_b[0]}
    env.step("click[< Prev]")  # back to the results: options dropped
    assert env.page.kind == "results" and env.selected_options == {}
    env.step(f"click[{asin}]")
    searched = env.step("click[Back to Search]")
    assert searched.observation.startswith("WebShop [SEP] Instruction:")


def test_search_works_from_any_page(env, task):
    env.reset(task)
    shown = _search(env)
    env.step(f"click[{shown[0]}]")
    again = env.step("search[bath towels]")
    assert env.page.kind == "results" and again.observation.count("[SEP]") > 10


def test_invalid_format_counts_as_a_step(env, task):
    env.reset(dataclasses.replace(task, max_steps=3))
    first = env.step("")
    assert (first.observation, first.reward, first.done, first.success) == (
        INVALID_FORMAT_OBSERVATION,
        0,
        False,
        False,
    )
    env.step("   ")
    last = env.step("")
    assert last.done and last.reward == 0.0 and not last.success


def test_observation_turns_take_etos_webshop_form(env, task):
    """ETO's WebShop turns (its env, SFT data and example): a page is ``Observation:\\n<page>``, the
    invalid-format message ``Observation: <message>``; the task turn is the bare page."""
    first = env.reset(task)
    assert not first.startswith("Observation")
    page = env.step(f"search[{search_query(env.goal.instruction_text)}]")
    assert format_observation(page) == "Observation:\n" + page.observation
    assert format_observation(page).startswith("Observation:\nInstruction: [SEP] ")
    invalid = env.step("")
    assert format_observation(invalid) == "Observation: " + INVALID_FORMAT_OBSERVATION


def test_unavailable_actions_leave_the_page_and_count(env, task):
    page = env.reset(dataclasses.replace(task, max_steps=4))
    for action in ("click[Buy Now]", "click[search]", "jump[now]"):
        result = env.step(action)
        assert result.observation == page and not result.done
    assert env.step("click[Next >]").done  # fourth step: the limit ends the episode with reward 0


def test_step_limit_gives_zero_and_ends(env, task):
    env.reset(dataclasses.replace(task, max_steps=2))
    shown = _search(env)
    result = env.step(f"click[{shown[0]}]")
    assert result.done and result.reward == 0.0 and not result.success
    with pytest.raises(RuntimeError):
        env.step("click[Buy Now]")


def test_buy_now_gives_the_purchase_reward(env, task):
    env.reset(task)
    shown = _search(env)
    wrong = next(a for a in shown if a != env.goal.asin)
    env.step(f"click[{wrong}]")
    result = env.step("click[Buy Now]")
    catalog = env.world.catalog
    expected = purchase_reward(catalog.by_asin[wrong], env.goal, catalog.prices[wrong], {}).total
    assert result.done and result.reward == pytest.approx(expected)
    assert result.success == (expected >= 1.0)
    assert env.reward_breakdown is not None and env.page.kind == "done"


def test_buying_on_the_last_step_counts(env, task):
    env.reset(dataclasses.replace(task, max_steps=3))
    goal = env.goal
    env.step(f"search[{search_query(goal.instruction_text)}]")
    env.step(f"click[{goal.asin}]")
    result = env.step("click[Buy Now]")
    assert result.done and result.reward > 0.0


def test_no_hit_search_shows_an_empty_results_page(env, task):
    env.reset(task)
    result = env.step("search[qqqzzz xxyyzz]")
    assert "Page 1 (Total results: 0) [SEP] Next >" in result.observation
    assert env.page.clickables == ("back to search", "next >")


def test_only_the_goal_options_earn_the_option_reward(env, task):
    """ETO's option rule through the real env: the goal product bought with a non-goal value in every
    option group scores 0 for options; with the goal's values it scores all of them."""
    env.reset(task)
    goal, product = env.goal, env.world.catalog.by_asin[env.goal.asin]
    wanted = goal.option_values
    assert wanted, "the task fixture's goal has options"
    env.step(f"search[{search_query(goal.instruction_text)}]")
    env.step(f"click[{goal.asin}]")
    for values in product.options.values():
        other = next((v for v in values if not any(fuzzy_match(v, w) for w in wanted)), None)
        if other is not None:
            env.step(f"click[{other}]")
    wrong = env.step("click[Buy Now]")
    breakdown = env.reward_breakdown
    assert breakdown is not None and breakdown.r_option == 0.0
    n_att = round((breakdown.r_att or 0.0) * len(goal.attributes))
    expected = (n_att + 0 + breakdown.r_price) / (len(goal.attributes) + len(wanted) + 1) * breakdown.r_type
    assert wrong.reward == pytest.approx(expected) and wrong.reward < 1.0

    env.reset(task)
    env.step(f"search[{search_query(goal.instruction_text)}]")
    env.step(f"click[{goal.asin}]")
    for value in wanted:
        env.step(f"click[{value}]")
    right = env.step("click[Buy Now]")
    assert env.reward_breakdown is not None and env.reward_breakdown.r_option == 1.0
    assert right.reward > wrong.reward
