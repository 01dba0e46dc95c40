"""Each reward component on worked examples, and the weights checked against WebShop's own logs."""

from __future__ import annotations

import json

import pytest
from rapidfuzz import fuzz

from eto_assets.envs.webshop.catalog import Goal
from eto_assets.envs.webshop.reward import (
    attribute_reward,
    fuzzy_match,
    heuristic_nouns,
    normalize_color,
    option_reward,
    price_reward,
    purchase_reward,
    total_reward,
    type_reward,
)

OTHER_PATH = "Health & Household › Household Supplies › Cleaning"


# -- r_type ----------------------------------------------------------------------------------------
def test_heuristic_nouns_keep_content_words():
    # "for" is a function word; single letters and numbers are not nouns
    assert heuristic_nouns("Lumora Running Shoes for Men, 2 X Arch Support") == [
        "lumora", "running", "shoes", "men", "arch", "support",
    ]  # fmt: skip


def test_type_same_product_is_full_match(make_product, make_goal):
    match = type_reward(make_product(), make_goal())
    assert (match.r_type, match.query_match, match.category_match, match.title_score) == (
        1.0,
        True,
        True,
        1.0,
    )


def test_type_no_shared_noun_is_zero_even_with_category_match(make_product, make_goal):
    # paths share "Clothing, Shoes & Jewelry" and "Shoes" (2 levels) but the titles share no noun
    sandals = make_product(
        title="Velnex Strappy Sandals",
        query="women's sandals",
        product_category="Clothing, Shoes & Jewelry › Women › Shoes › Sandals",
    )
    match = type_reward(sandals, make_goal())
    assert match.category_match and not match.query_match
    assert (match.title_score, match.r_type) == (0.0, 0.0)


def test_type_title_overlap_above_20_percent_is_enough(make_product, make_goal):
    # goal nouns: lumora running shoes men arch support (6); shared: running, shoes -> 2/6
    rack = make_product(title="Running Shoes Rack Organizer", query="shoe racks", product_category=OTHER_PATH)
    match = type_reward(rack, make_goal())
    assert match.title_score == pytest.approx(2 / 6)
    assert match.r_type == 1.0


def test_type_weak_overlap_without_other_match_is_half(make_product, make_goal):
    kit = make_product(title="Shoes Cleaning Kit", query="cleaning kits", product_category=OTHER_PATH)
    match = type_reward(kit, make_goal())
    assert match.title_score == pytest.approx(1 / 6)
    assert match.r_type == 0.5


def test_type_overlap_below_10_percent_is_point_one(make_product, make_goal):
    goal = make_goal(
        name="Lumora Running Shoes Men Arch Support Breathable Mesh Sneakers Walking Gym Trainers"
    )
    bag = make_product(title="Gym Bag", query="gym bags", product_category=OTHER_PATH)
    match = type_reward(bag, goal)
    assert match.title_score == pytest.approx(1 / 12)
    assert match.r_type == 0.1


def test_type_goal_without_nouns_scores_point_two(make_product, make_goal):
    goal = make_goal(name="")
    assert type_reward(make_product(), goal).r_type == 1.0  # query matches
    other = make_product(query="x", product_category=OTHER_PATH)
    match = type_reward(other, goal)
    assert (match.title_score, match.r_type) == (0.2, 0.5)


def test_type_uses_the_given_noun_finder(make_product, make_goal):
    match = type_reward(make_product(), make_goal(), nouns=lambda text: ["shoes"] if "Shoes" in text else [])
    assert match.title_score == 1.0


# -- attributes ------------------------------------------------------------------------------------
def test_fuzzy_match_rounds_like_webshop():
    assert fuzzy_match("machine wash", "machine washable")  # 85.7 -> 86 > 85
    short, long = "x" * 37, "x" * 37 + "y" * 13
    assert 85 < fuzz.token_set_ratio(short, long) < 85.5  # 85.06 rounds to 85: not above 85
    assert not fuzzy_match(short, long)


def test_attribute_reward_worked_example(make_product, make_goal):
    product = make_product(title="Lumora Running Shoes, Breathable Mesh")
    goal = make_goal(attributes=["arch support", "memory foam", "breathable mesh", "non slip", "waterproof"])
    # arch support: in the attribute list; memory foam: token-set subset of "memory foam insole" (100);
    # breathable mesh: in the title; non slip: in the description; waterproof: nowhere -> 4 of 5
    assert attribute_reward(product, goal) == (pytest.approx(0.8), 4)


def test_attribute_reward_fuzzy_threshold(make_product, make_goal):
    product = make_product(attributes=["slip resistant"], description="", title="Shoes")
    assert attribute_reward(product, make_goal(attributes=["non slip"])) == (0.0, 0)  # ratio 67


# -- options ---------------------------------------------------------------------------------------
def test_normalize_color():
    assert normalize_color("heather grey") == "grey"
    assert normalize_color("navy blue") == "navy blue"  # two-word colours win over "blue"
    assert normalize_color("standard") == "standard"  # whole words only ("tan" is not in it)
    assert normalize_color("9.5") == "9.5"


def test_option_reward_colour_and_size():
    assert option_reward(["grey", "9"], {"color": "heather grey", "size": "9"}) == (1.0, 2)


def test_option_reward_is_fuzzy_for_every_group_as_in_eto():
    # ETO's goal.py fuzzy-matches every option group alike, so a size "9.5" hits the goal's "9"
    # (token-set ratio 100: "9" is a subset of "9 5") and "pack of 1" still hits "6.76 fl oz"
    assert option_reward(["9"], {"size": "9.5"}) == (1.0, 1)
    assert option_reward(["6.76 fl oz"], {"size": "6.76 fl oz (pack of 1)"}) == (1.0, 1)
    assert option_reward(["grey", "9"], {"size": "10"}) == (0.0, 0)


def test_option_reward_matches_only_the_goal_options_not_the_product_text(make_product, make_goal):
    """Goal "red", size "large" chosen, "large" written in the title: 0 for options, as in ETO."""
    product = make_product(
        title="Lumora Running Shoes for Men, Large Toe Box",
        options={"color": ["red", "black"], "size": ["medium", "large"]},
    )
    goal = make_goal(goal_options=["red"], attributes=["arch support"], price_upper=60.0)
    assert option_reward(goal.option_values, {"size": "large"}) == (0.0, 0)
    result = purchase_reward(product, goal, 49.99, {"size": "large"})
    # same product type (r_type 1), "arch support" in its attribute list (1 of 1), no goal option
    # chosen (0 of 1), 49.99 <= 60 (price 1): (1 + 0 + 1) / (1 + 1 + 1) = 2/3, not the 1.0 that
    # counting "large" because the title mentions it would give
    assert (result.r_type, result.r_att, result.r_option, result.r_price) == (1.0, 1.0, 0.0, 1.0)
    assert result.total == pytest.approx(2 / 3)


def test_option_reward_counts_a_matched_goal_option(make_product, make_goal):
    product = make_product(options={"color": ["bright red", "black"], "size": ["medium", "large"]})
    goal = make_goal(goal_options=["red", "large"], attributes=["arch support"], price_upper=60.0)
    chosen = {"color": "bright red", "size": "large"}  # "bright red" -> base colour "red"
    assert option_reward(goal.option_values, chosen) == (1.0, 2)
    assert option_reward(goal.option_values, {"size": "large"}) == (0.5, 1)
    assert purchase_reward(product, goal, 49.99, chosen).total == 1.0  # (1 + 2 + 1) / (1 + 2 + 1)


def test_option_reward_counts_each_goal_option_once():
    # two chosen values hitting one goal option count once, so the total stays in [0, 1]
    assert option_reward(["grey"], {"color": "grey", "pattern": "grey stripes"}) == (1.0, 1)


def test_option_reward_without_goal_options():
    assert option_reward([], {}) == (None, 0)
    assert option_reward([], {"size": "large"}) == (None, 0)


# -- price and total -------------------------------------------------------------------------------
def test_price_reward():
    assert price_reward(19.99, 30.0) == 1.0
    assert price_reward(30.0, 30.0) == 1.0
    assert price_reward(30.01, 30.0) == 0.0


def test_total_reward_weights():
    # 2 of 3 attributes, 1 of 2 options, price ok: (2 + 1 + 1) / (3 + 2 + 1)
    assert total_reward(2, 1, 1.0, 3, 2, 1.0) == pytest.approx(4 / 6)
    assert total_reward(2, 1, 1.0, 3, 2, 0.5) == pytest.approx(2 / 6)
    assert total_reward(0, 0, 0.0, 1, 0, 1.0) == 0.0


def test_purchase_reward_worked_example(make_product, make_goal):
    goal = make_goal(attributes=["arch support", "waterproof"], goal_options=["grey", "9"], price_upper=40.0)
    result = purchase_reward(make_product(), goal, 49.99, {"color": "heather grey"})
    # attributes 1/2, options 1/2, price 49.99 > 40 -> 0, same type: (1 + 1 + 0) / (2 + 2 + 1)
    assert (result.r_att, result.r_option, result.r_price, result.r_type) == (0.5, 0.5, 0.0, 1.0)
    assert result.total == pytest.approx(2 / 5)
    perfect = purchase_reward(make_product(), make_goal(), 49.99, {"color": "heather grey", "size": "9"})
    assert perfect.total == 1.0


def test_dict_goal_options_count_their_values(make_product, make_goal):
    goal = make_goal(goal_options={"color": "grey", "size": "9"})
    assert purchase_reward(make_product(), goal, 10.0, {"color": "grey", "size": "9"}).total == 1.0


def test_weights_reproduce_webshop_logged_rewards(eto_data_dir):
    """WebShop's session logs record each purchase's components and total; our weights must agree."""
    sessions = sorted((eto_data_dir / "webshop" / "all_trajs").glob("*.jsonl"))
    if not sessions:
        pytest.skip("no WebShop session logs in the shared data")
    for path in sessions:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        goal, done = Goal.from_record(records[0]["goal"]), records[-1]
        info = done["reward_info"]
        n_att = round(info["r_att"] * len(goal.attributes))
        n_opt = round(info.get("r_option", 0.0) * len(goal.option_values))
        sizes = (len(goal.attributes), len(goal.option_values))
        total = total_reward(n_att, n_opt, float(info["r_price"]), *sizes, info["r_type"])
        assert total == pytest.approx(done["reward"]), path.name


def test_type_reward_on_a_logged_purchase_of_the_goal_product(eto_data_dir, make_product):
    path = eto_data_dir / "webshop" / "all_trajs" / "20220427_1_7.jsonl"
    if not path.exists():
        pytest.skip("session log 20220427_1_7 not in the shared data")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    goal, logged = Goal.from_record(records[0]["goal"]), records[-1]["reward_info"]
    bought = make_product(
        asin=goal.asin, title=goal.name, query=goal.query, product_category=goal.product_category,
        description="", bullet_points=[], attributes=["DUMMY_ATTR"], options={},
    )  # fmt: skip
    result = purchase_reward(bought, goal, records[-1]["content"]["price"], {})
    assert (result.r_type, result.type_match.query_match, result.type_match.category_match) == (
        1.0,
        True,
        True,
    )
    assert result.type_match.title_score == pytest.approx(logged["title_score"], abs=0.02)  # spaCy: 0.913
    assert result.total == pytest.approx(records[-1]["reward"])
