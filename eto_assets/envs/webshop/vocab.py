"""Word lists for the generated catalog: product types in WebShop's five categories.

Written for this project. Each type has its scrape query, how an instruction names it, a price range,
an Amazon-style category path, title nouns, an attribute pool (short lowercase phrases, as in
``items_ins_v2``) and option groups. The table is plain text to keep it readable.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProductType:
    category: str
    query: str
    ask: str  # how an instruction names the product
    product_category: str
    nouns: tuple[str, ...]
    attributes: tuple[str, ...]
    options: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    price: tuple[float, float] = (10.0, 50.0)


_TABLE = """
beauty | hair extensions | clip-in hair extensions | 15-80
  path: Beauty & Personal Care › Hair Care › Hair Extensions, Wigs & Accessories › Hair Extensions
  nouns: Clip in Hair Extensions; Human Hair Extensions; Hair Extension Set
  attributes: natural looking; long lasting; easy to apply; heat resistant; tangle free
  option color: natural black; dark brown; light brown; ash blonde
  option size: 14 inch; 18 inch; 22 inch
beauty | face moisturizer | a face moisturizer | 8-45
  path: Beauty & Personal Care › Skin Care › Face › Creams & Moisturizers › Face Moisturizers
  nouns: Face Moisturizer; Daily Facial Cream; Hydrating Face Lotion
  attributes: fragrance free; paraben free; sensitive skin; hyaluronic acid; non greasy
  option size: 1.7 fl oz; 3.4 fl oz; 1.7 fl oz (pack of 2)
beauty | shampoo | a shampoo | 6-35
  path: Beauty & Personal Care › Hair Care › Shampoo & Conditioner › Shampoos
  nouns: Shampoo; Clarifying Shampoo; Moisturizing Shampoo
  attributes: sulfate free; damaged hair; tea tree; argan oil; color safe
  option size: 8 fl oz; 16 fl oz; 33.8 fl oz
  option scent: coconut; lavender; unscented; citrus
beauty | nail polish | nail polish | 4-25
  path: Beauty & Personal Care › Foot, Hand & Nail Care › Nail Art & Polish › Nail Polish
  nouns: Nail Polish; Gel Nail Polish; Nail Lacquer
  attributes: quick drying; non toxic; high gloss; chip resistant; long wear
  option color: cherry red; nude pink; midnight blue; classic white
  option size: 0.5 fl oz; 0.5 fl oz (pack of 3)
beauty | makeup brush set | a makeup brush set | 9-40
  path: Beauty & Personal Care › Tools & Accessories › Makeup Brushes & Tools › Brush Sets
  nouns: Makeup Brush Set; Makeup Brushes; Cosmetic Brush Kit
  attributes: synthetic bristles; travel case; easy to clean; cruelty free; wooden handles
  option color: rose gold; black; silver
  option style: with case; without case
beauty | deodorant | a deodorant | 5-25
  path: Beauty & Personal Care › Personal Care › Deodorants & Antiperspirants › Deodorants
  nouns: Deodorant; Deodorant Stick; Roll-On Deodorant
  attributes: aluminum free; baking soda free; all day protection; vegan formula; travel size
  option scent: lavender; cedarwood; unscented; citrus
  option size: 2.65 ounce; 2.65 ounce (pack of 2)
electronics | wireless earbuds | wireless earbuds | 19-120
  path: Electronics › Headphones, Earbuds & Accessories › Headphones & Earbuds › Earbud Headphones
  nouns: Wireless Earbuds; Bluetooth Earbuds; True Wireless Earphones
  attributes: noise cancelling; water resistant; charging case; hands free calling; touch control
  option color: black; white; navy blue
electronics | usb c cable | a usb c cable | 6-25
  path: Electronics › Computers & Accessories › Cables & Accessories › Cables › USB Cables
  nouns: USB C Cable; USB C Charging Cable; Type C Charging Cord
  attributes: fast charging; braided nylon; data transfer; bend resistant; aluminum connectors
  option color: black; white; red
  option size: 3 ft; 6 ft; 10 ft
electronics | portable charger | a portable charger | 15-60
  path: Electronics › Cell Phones & Accessories › Chargers & Power Adapters › Portable Power Banks
  nouns: Portable Charger; Power Bank; Portable Battery Pack
  attributes: led display; high capacity; compact size; dual usb ports; pass through charging
  option color: black; white; blue
  option capacity: 10000mah; 20000mah; 26800mah
electronics | bluetooth speaker | a bluetooth speaker | 20-150
  path: Electronics › Portable Audio & Video › Portable Speakers & Docks › Portable Bluetooth Speakers
  nouns: Bluetooth Speaker; Portable Speaker; Wireless Speaker
  attributes: waterproof; stereo sound; long battery life; built in microphone; deep bass
  option color: black; red; blue; grey
electronics | wireless mouse | a wireless mouse | 9-45
  path: Electronics › Computers & Accessories › Keyboards, Mice & Accessories › Mice
  nouns: Wireless Mouse; Ergonomic Mouse; Cordless Computer Mouse
  attributes: ergonomic design; silent click; usb receiver; rechargeable battery; adjustable dpi
  option color: black; white; grey; pink
electronics | tablet case | a tablet case | 10-40
  path: Electronics › Computers & Accessories › Tablet Accessories › Bags, Cases & Sleeves › Cases
  nouns: Tablet Case; Folio Case; Protective Tablet Cover
  attributes: auto sleep wake; shockproof; pencil holder; stand feature; slim fit
  option color: black; navy blue; rose gold; purple
  option size: 10.2 inch; 10.9 inch; 11 inch
fashion | men's running shoes | running shoes for men | 30-140
  path: Clothing, Shoes & Jewelry › Men › Shoes › Athletic › Running
  nouns: Running Shoes; Road Running Sneakers; Athletic Trainers
  attributes: arch support; rubber sole; lightweight; breathable mesh; memory foam
  option color: black; grey; navy blue; white; olive green
  option size: 8; 8.5; 9; 9.5; 10; 10.5; 11; 12
fashion | women's t-shirts | a t-shirt for women | 8-35
  path: Clothing, Shoes & Jewelry › Women › Clothing › Tops, Tees & Blouses › T-Shirts
  nouns: T-Shirt; Crew Neck Tee; Short Sleeve Top
  attributes: machine wash; soft cotton; relaxed fit; short sleeve; moisture wicking
  option color: white; black; heather grey; pink; royal blue
  option size: small; medium; large; x-large; xx-large
fashion | women's leggings | leggings for women | 12-45
  path: Clothing, Shoes & Jewelry › Women › Clothing › Leggings
  nouns: Leggings; Yoga Pants; Workout Leggings
  attributes: high waist; tummy control; four way stretch; squat proof; side pockets
  option color: black; navy blue; charcoal; burgundy
  option size: small; medium; large; x-large
fashion | men's hoodies | a hoodie for men | 18-60
  path: Clothing, Shoes & Jewelry › Men › Clothing › Fashion Hoodies & Sweatshirts
  nouns: Hoodie; Pullover Hoodie; Hooded Sweatshirt
  attributes: fleece lined; kangaroo pocket; drawstring hood; long sleeve; regular fit
  option color: black; grey; army green; navy blue; maroon
  option size: medium; large; x-large; xx-large
fashion | women's sandals | sandals for women | 15-60
  path: Clothing, Shoes & Jewelry › Women › Shoes › Sandals › Flat Sandals
  nouns: Flat Sandals; Slide Sandals; Strappy Sandals
  attributes: open toe; ankle strap; cushioned footbed; non slip; faux leather
  option color: black; tan; white; silver
  option size: 6; 7; 8; 9; 10
fashion | men's wallets | a wallet for men | 12-50
  path: Clothing, Shoes & Jewelry › Men › Accessories › Wallets, Card Cases & Money Organizers › Wallets
  nouns: Leather Wallet; Bifold Wallet; Slim Wallet
  attributes: rfid blocking; genuine leather; gift box; card slots; id window
  option color: black; brown; dark brown
food | coffee beans | whole bean coffee | 9-45
  path: Grocery & Gourmet Food › Beverages › Coffee, Tea & Cocoa › Coffee › Whole Coffee Beans
  nouns: Whole Bean Coffee; Coffee Beans; Roasted Coffee Beans
  attributes: dark roast; medium roast; fair trade; usda organic; single origin
  option size: 12 ounce; 2 pound; 5 pound
food | protein bars | protein bars | 12-40
  path: Grocery & Gourmet Food › Snack Foods › Bars › Nutrition Bars
  nouns: Protein Bars; Nutrition Bars; Snack Bars
  attributes: gluten free; low sugar; high protein; non gmo; keto friendly
  option flavor name: chocolate peanut butter; cookie dough; salted caramel; vanilla almond
  option size: 12 count; 24 count
food | green tea | green tea | 4-25
  path: Grocery & Gourmet Food › Beverages › Coffee, Tea & Cocoa › Tea › Green Tea
  nouns: Green Tea; Green Tea Bags; Loose Leaf Green Tea
  attributes: usda organic; individually wrapped; natural flavors; antioxidant rich; kosher certified
  option flavor name: jasmine; mint; lemon; original
  option size: 20 count; 100 count; 20 count (pack of 6)
food | dark chocolate | dark chocolate | 6-30
  path: Grocery & Gourmet Food › Candy & Chocolate › Chocolate › Chocolate Bars
  nouns: Dark Chocolate Bar; Dark Chocolate; Chocolate Bars
  attributes: dairy free; fair trade; sugar free; non gmo; gift box
  option flavor name: sea salt; almond; orange; mint; raspberry
  option size: 3.5 ounce (pack of 4); 3.5 ounce (pack of 12)
food | beef jerky | beef jerky | 6-35
  path: Grocery & Gourmet Food › Snack Foods › Jerky & Dried Meats › Jerky › Beef
  nouns: Beef Jerky; Jerky Snacks; Meat Snacks
  attributes: high protein; gluten free; low fat; zero sugar; grass fed
  option flavor name: original; teriyaki; peppered; sweet and hot
  option size: 2.85 ounce; 10 ounce
food | sparkling water | sparkling water | 5-30
  path: Grocery & Gourmet Food › Beverages › Bottled Beverages, Water & Drink Mixes › Water › Sparkling Water
  nouns: Sparkling Water; Flavored Sparkling Water; Seltzer Water
  attributes: zero calories; sugar free; natural flavors; caffeine free; recyclable cans
  option flavor name: lime; grapefruit; black cherry; lemon
  option size: 12 fl oz (pack of 12); 12 fl oz (pack of 24)
garden | sofas and couches | a sofa for the living room | 150-650
  path: Home & Kitchen › Furniture › Living Room Furniture › Sofas & Couches
  nouns: Sofa Couch; Loveseat; Sectional Sofa
  attributes: wood frame; easy assembly; button tufted; high density foam; removable cushions
  option color: grey; beige; navy blue; dark green
garden | throw pillow covers | throw pillow covers | 8-30
  path: Home & Kitchen › Bedding › Decorative Pillows, Inserts & Covers › Throw Pillow Covers
  nouns: Throw Pillow Covers; Cushion Covers; Decorative Pillow Cases
  attributes: living room; hidden zipper; machine washable; soft velvet; farmhouse style
  option color: beige; navy blue; mustard yellow; grey; white
  option size: 18 x 18 inch; 20 x 20 inch; 12 x 20 inch
garden | bath towels | bath towels | 15-60
  path: Home & Kitchen › Bath › Towels › Bath Towels
  nouns: Bath Towels; Towel Set; Cotton Bath Towels
  attributes: highly absorbent; quick dry; hotel quality; lint free; ring spun cotton
  option color: white; grey; navy blue; beige
  option size: 2 pack; 4 pack; 6 piece set
garden | led desk lamp | a desk lamp | 15-60
  path: Tools & Home Improvement › Lighting & Ceiling Fans › Lamps & Shades › Desk Lamps
  nouns: LED Desk Lamp; Desk Lamp; Table Lamp
  attributes: dimmable; usb charging port; eye caring; adjustable arm; memory function
  option color: black; white; silver
garden | garden hose | a garden hose | 15-70
  path: Patio, Lawn & Garden › Watering Equipment › Garden Hoses
  nouns: Garden Hose; Expandable Garden Hose; Water Hose
  attributes: leak proof; kink free; brass fittings; spray nozzle; heavy duty
  option color: green; blue; black
  option size: 25 ft; 50 ft; 100 ft
garden | storage baskets | storage baskets | 10-45
  path: Home & Kitchen › Storage & Organization › Baskets, Bins & Containers › Storage Baskets
  nouns: Storage Baskets; Storage Bins; Woven Baskets
  attributes: collapsible; sturdy handles; closet organizer; natural seagrass; stackable
  option color: beige; grey; white; brown
  option size: small; medium; large; set of 3
"""


def _parse(table: str) -> tuple[ProductType, ...]:
    """``category | query | ask | low-high`` lines, each followed by indented ``key: a; b`` lines."""
    types: list[ProductType] = []
    fields: dict = {}

    def flush() -> None:
        if fields:
            types.append(ProductType(**fields))

    for line in table.strip().splitlines():
        if not line.startswith(" "):
            flush()
            category, query, ask, price = (s.strip() for s in line.split("|"))
            low, high = (float(x) for x in price.split("-"))
            fields = {"category": category, "query": query, "ask": ask, "price": (low, high), "options": {}}
            continue
        key, value = (s.strip() for s in line.split(":", 1))
        items = tuple(v.strip() for v in value.split(";"))
        if key == "path":
            fields["product_category"] = value
        elif key.startswith("option "):
            fields["options"][key.removeprefix("option ")] = items
        else:
            fields[key] = items
    flush()
    return tuple(types)


PRODUCT_TYPES = _parse(_TABLE)

BRAND_HEADS = ("Vel", "Nor", "Kai", "Lum", "Mira", "Tor", "Zen", "Ora", "Bri", "Sol", "Fen", "Quil", "Ard")
BRAND_TAILS = ("ora", "vix", "nex", "lin", "mo", "tra", "ris", "do", "wick", "belle")

# How an instruction phrases one chosen option (others: "<value> <group>").
OPTION_PHRASES = {"color": "{v} color", "size": "size {v}", "flavor name": "{v} flavor"}

INSTRUCTION_TEMPLATES = (
    "i am looking for {ask} with {attrs}{opts}",
    "i want to buy {ask}, {attrs}{opts}",
    "find me {ask} with {attrs}{opts}",
    "i need {ask} that has {attrs}{opts}",
    "i'm looking for {ask} which is {attrs}{opts}",
    "i would like {ask} with {attrs}{opts}",
)

REVIEW_TITLES = ("Great value", "Works as described", "Not bad", "Love it", "Would buy again", "Good quality")
REVIEW_BODIES = (
    "Arrived quickly and matches the listing.",
    "Good quality for the price, I use it every day.",
    "Does the job, though the packaging could be better.",
    "Exactly what I needed, would recommend.",
)
