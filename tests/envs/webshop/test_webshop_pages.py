"""Page rendering in WebShop's text mode, the buttons each page offers, and action parsing."""

from __future__ import annotations

from eto_assets.envs.webshop import pages
from eto_assets.envs.webshop.catalog import Review

INSTR = "i need running shoes, and price lower than 60.00 dollars"


def test_search_page():
    page = pages.search_page(INSTR)
    assert page.text == f"WebShop [SEP] Instruction: [SEP] {INSTR} [SEP] Search"
    assert page.available_actions() == {"has_search_bar": True, "clickables": ["search"]}


def test_results_first_page(make_product):
    shoes = [make_product(asin=f"B0TEST000{i}", title=f"Shoe {i}", price_tag=f"${i}0.0") for i in range(2)]
    page = pages.results_page(INSTR, shoes, page=1, total=12)
    assert page.text == (
        f"Instruction: [SEP] {INSTR} [SEP] Back to Search [SEP] Page 1 (Total results: 12) [SEP] Next > "
        "[SEP] B0TEST0000 [SEP] Shoe 0 [SEP] $00.0 [SEP] B0TEST0001 [SEP] Shoe 1 [SEP] $10.0"
    )
    assert page.clickables == ("back to search", "next >", "b0test0000", "b0test0001")
    assert not page.has_search_bar


def test_results_later_page_offers_prev(make_product):
    page = pages.results_page(INSTR, [make_product()], page=2, total=12)
    assert "Page 2 (Total results: 12) [SEP] < Prev [SEP] Next > [SEP] B0TEST0001" in page.text
    assert page.clickables[:3] == ("back to search", "< prev", "next >")


def test_item_page(make_product):
    product = make_product(rating="4.5")
    page = pages.item_page(INSTR, product)
    assert page.text == (
        f"Instruction: [SEP] {INSTR} [SEP] Back to Search [SEP] < Prev [SEP] color [SEP] heather grey [SEP] "
        "navy blue [SEP] size [SEP] 9 [SEP] 9.5 [SEP] 10 [SEP] Lumora Running Shoes for Men, Arch Support "
        "[SEP] Price: $49.99 [SEP] Rating: 4.5 [SEP] Description [SEP] Features [SEP] Reviews [SEP] Buy Now"
    )
    assert set(page.clickables) == {
        "back to search", "< prev", "description", "features", "reviews", "buy now",
        "heather grey", "navy blue", "9", "9.5", "10",
    }  # fmt: skip
    assert ("9.5", "size") in page.option_groups


def test_item_page_without_options(make_product):
    page = pages.item_page(INSTR, make_product(options={}))
    assert "< Prev [SEP] Lumora Running Shoes" in page.text
    assert "Rating: N.A." in page.text


def test_sub_pages(make_product):
    product = make_product(
        bullet_points=["Arch support", "Rubber sole"],
        reviews=[Review("Great value", "5", "Fits well."), Review("Not bad", "3", "Runs small.")],
    )
    head = f"Instruction: [SEP] {INSTR} [SEP] Back to Search [SEP] < Prev [SEP] "
    assert pages.sub_page(INSTR, product, "Description").text == head + "Non slip outsole for wet roads."
    assert pages.sub_page(INSTR, product, "Features").text == head + "Arch support [SEP] Rubber sole"
    reviews = pages.sub_page(INSTR, product, "Reviews")
    assert (
        reviews.text
        == head + '"Great value" [SEP] 5 [SEP] Fits well. [SEP] "Not bad" [SEP] 3 [SEP] Runs small.'
    )
    assert reviews.clickables == ("back to search", "< prev")


def test_done_page_offers_nothing():
    page = pages.done_page("B0TEST0001", 0.75)
    assert page.text.startswith("Thank you for shopping with us!")
    assert page.text.endswith("[SEP] 0.75")
    assert page.clickables == ()


def test_parse_action():
    assert pages.parse_action("search[red shoes]") == ("search", "red shoes")
    assert pages.parse_action("  click[Buy Now] ") == ("click", "Buy Now")
    assert pages.parse_action("click[< Prev]") == ("click", "< Prev")
    assert pages.parse_action("click[6.76 fl oz (pack of 1)]") == ("click", "6.76 fl oz (pack of 1)")
    for bad in ("", "search[]", "click[ ]", "buy[now]", "Click[Buy Now]", "search red shoes", "think[hmm]"):
        assert pages.parse_action(bad) is None, bad
