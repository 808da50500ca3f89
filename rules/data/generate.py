"""Generate the sample store, catalogue and inventory files (deterministic).

    python rules/data/generate.py            # rewrite stores.csv, catalog.csv, inventory.csv here
    python rules/data/generate.py --out DIR  # write them somewhere else
    python rules/data/generate.py --check    # exit 1 when the committed files differ

The retailer is fictional (apparel, shoes, and a coffee bar in the larger
stores); the cities and neighbourhood names are real, the store positions are
a seeded scatter around each city centre.  Everything comes from one
``random.Random(SEED)``, consumed in a fixed order, so the same Python gives
byte-identical files; tests/inventory checks that the committed files are
what this script writes.  Formats: rules/data/README.md and docs/inventory.md.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import random
import sys
from pathlib import Path

SEED = 20240605
HERE = Path(__file__).resolve().parent
KM_PER_DEG_LAT = 111.195  # 6371.0088 km * pi / 180

SHOE_SIZES = [str(s) for s in range(36, 48)]          # EU 36..47
WOMEN_SHOE = SHOE_SIZES[:7]                            # 36..42
MEN_SHOE = SHOE_SIZES[4:]                              # 40..47
APPAREL = ["XS", "S", "M", "L", "XL", "XXL"]
ONE_SIZE = ["one-size"]

# ------------------------------------------------------------------ cities
# name, country, centre lat, lon, stores, scatter sigma (km), max distance (km), neighbourhoods
CITIES = [
    ("London", "uk", 51.5074, -0.1278, 60, 7.0, 22.0, [
        "Riverside", "Soho", "Covent Garden", "Camden", "Islington", "Shoreditch", "Brixton", "Clapham",
        "Hackney", "Greenwich", "Kensington", "Chelsea", "Notting Hill", "Hammersmith", "Wimbledon",
        "Richmond", "Stratford", "Canary Wharf", "Battersea", "Peckham", "Dalston", "Angel", "Marylebone",
        "Fulham", "Putney", "Ealing", "Wembley", "Croydon", "Kingston", "Walthamstow", "Bermondsey"]),
    ("Manchester", "uk", 53.4808, -2.2426, 25, 5.0, 15.0, [
        "Northern Quarter", "Deansgate", "Ancoats", "Didsbury", "Chorlton", "Salford Quays",
        "Spinningfields", "Fallowfield", "Withington", "Levenshulme", "Prestwich", "Altrincham",
        "Stockport", "Sale", "Urmston"]),
    ("Berlin", "de", 52.5200, 13.4050, 45, 6.0, 20.0, [
        "Mitte", "Kreuzberg", "Friedrichshain", "Prenzlauer Berg", "Neukölln", "Charlottenburg",
        "Schöneberg", "Wedding", "Moabit", "Steglitz", "Spandau", "Pankow", "Tempelhof", "Lichtenberg",
        "Treptow", "Wilmersdorf", "Zehlendorf", "Köpenick", "Alexanderplatz", "Potsdamer Platz"]),
    ("Munich", "de", 48.1372, 11.5756, 20, 4.0, 12.0, [
        "Schwabing", "Maxvorstadt", "Haidhausen", "Sendling", "Bogenhausen", "Neuhausen", "Pasing",
        "Giesing", "Altstadt", "Au", "Laim", "Moosach"]),
    ("Paris", "fr", 48.8566, 2.3522, 55, 4.5, 15.0, [
        "Marais", "Montmartre", "Bastille", "Belleville", "Saint-Germain", "Opéra", "Batignolles",
        "Oberkampf", "Montparnasse", "Nation", "République", "Les Halles", "Canal Saint-Martin", "Passy",
        "Bercy", "La Défense", "Pigalle", "Châtelet", "Auteuil", "Butte-aux-Cailles"]),
    ("Lyon", "fr", 45.7640, 4.8357, 15, 3.0, 9.0, [
        "Presqu'île", "Croix-Rousse", "Confluence", "Part-Dieu", "Vieux Lyon", "Brotteaux",
        "Guillotière", "Villeurbanne", "Monplaisir", "Vaise"]),
    ("Amsterdam", "nl", 52.3676, 4.9041, 30, 3.5, 12.0, [
        "Jordaan", "De Pijp", "Oud-West", "Centrum", "Oost", "Noord", "Zuidas", "De Baarsjes",
        "Westerpark", "Plantage", "Oud-Zuid", "IJburg", "Bos en Lommer", "Watergraafsmeer", "Amstelveen"]),
    ("Rotterdam", "nl", 51.9244, 4.4777, 12, 3.0, 9.0, [
        "Centrum", "Kralingen", "Delfshaven", "Kop van Zuid", "Blijdorp", "Noord", "Hillegersberg",
        "Feijenoord", "Alexandrium", "Katendrecht"]),
    ("New York", "us", 40.7128, -74.0060, 58, 7.0, 25.0, [
        "SoHo", "Williamsburg", "Tribeca", "Chelsea", "Harlem", "Upper West Side", "Upper East Side",
        "Astoria", "Park Slope", "DUMBO", "Flatiron", "Greenwich Village", "East Village",
        "Lower East Side", "Midtown", "Hell's Kitchen", "Long Island City", "Bushwick", "Flushing",
        "Bay Ridge", "Financial District", "Murray Hill", "Greenpoint", "Jackson Heights", "Forest Hills",
        "Riverdale", "Hudson Yards", "Union Square", "Columbus Circle", "Cobble Hill"]),
]
NAME_SUFFIXES = ["Market", "Station", "Square", "Arcade", "Yard", "Corner"]

STREETS = {
    "uk": ["High Street", "Station Road", "Church Street", "Market Street", "King Street", "Queen's Road",
           "Victoria Street", "Park Lane", "Mill Lane", "London Road", "Bridge Street", "The Parade"],
    "de": ["Hauptstraße", "Bahnhofstraße", "Schillerstraße", "Goethestraße", "Gartenstraße",
           "Lindenallee", "Friedrichstraße", "Kastanienallee", "Marktplatz", "Schlossstraße"],
    "fr": ["rue de la République", "boulevard Voltaire", "rue du Commerce", "avenue Victor Hugo",
           "rue de la Paix", "rue Saint-Denis", "boulevard Haussmann", "rue des Martyrs", "place du Marché"],
    "nl": ["Kalverstraat", "Dorpsstraat", "Kerkstraat", "Molenweg", "Stationsplein", "Marktplein",
           "Hoogstraat", "Lijnbaan", "Nieuwendijk"],
    "us": ["Broadway", "5th Avenue", "Main Street", "Bedford Avenue", "Atlantic Avenue", "Lexington Avenue",
           "Court Street", "Steinway Street", "Amsterdam Avenue", "Smith Street"],
}


def street_address(country: str, number: int, street: str) -> str:
    if country in ("de", "nl"):
        return f"{street} {number}"
    if country == "fr":
        return f"{number} {street}"
    return f"{number} {street}"


# Opening hours by country and store format (see README: days, then HH:MM-HH:MM ranges or closed):
# small French stores close for lunch; American flagships' coffee bars keep them open past
# midnight on Friday and Saturday.
HOURS = {
    ("uk", "flagship"): "Mo-Fr 07:30-21:00; Sa 08:00-20:00; Su 10:00-18:00",
    ("uk", "standard"): "Mo-Sa 09:00-20:00; Su 11:00-17:00",
    ("uk", "express"): "Mo-Fr 08:00-19:00; Sa 09:00-18:00; Su closed",
    ("de", "flagship"): "Mo-Fr 08:00-20:00; Sa 09:00-20:00; Su closed",
    ("de", "standard"): "Mo-Sa 10:00-20:00; Su closed",
    ("de", "express"): "Mo-Fr 10:00-19:00; Sa 10:00-18:00; Su closed",
    ("fr", "flagship"): "Mo-Sa 08:30-20:30; Su 11:00-19:00",
    ("fr", "standard"): "Mo-Sa 10:00-19:30; Su closed",
    ("fr", "express"): "Mo closed; Tu-Sa 10:00-13:00,14:00-19:00; Su closed",
    ("nl", "flagship"): "Mo 11:00-19:00; Tu-We,Fr-Sa 09:00-19:00; Th 09:00-21:00; Su 12:00-18:00",
    ("nl", "standard"): "Mo 12:00-18:00; Tu-Sa 10:00-18:00; Su 12:00-17:00",
    ("nl", "express"): "Mo-Sa 10:00-18:00",
    ("us", "flagship"): "Mo-Th 07:00-22:00; Fr-Sa 07:00-01:00; Su 09:00-20:00",
    ("us", "standard"): "Mo-Sa 10:00-21:00; Su 11:00-19:00",
    ("us", "express"): "Mo-Fr 08:00-20:00; Sa-Su 10:00-18:00",
}
# Dated clauses appended to every store's hours in a country: holidays and short days.
HOLIDAYS = {
    "uk": "Dec 24 09:00-16:00; Dec 25-26 closed; Jan 1 closed",
    "de": "Dec 24 09:00-14:00; Dec 31 09:00-14:00; PH closed",     # PH: each state's public holidays
    "fr": "Dec 25 closed; Jan 1 closed; May 1 closed",
    "nl": "Dec 25-26 closed; Jan 1 closed; Apr 27 closed",
    "us": "2026 Nov 26 closed; Dec 25 closed; Jan 1 closed",     # Thanksgiving moves: dated
}
FORMATS = [("flagship", 0.15), ("standard", 0.55), ("express", 0.30)]

# ------------------------------------------------------------------ catalogue
# category, sku prefix, [(name, sizes)]
CATALOG = [
    ("running-shoes", "RUN", [
        ("Tempo Runner 3 (women)", WOMEN_SHOE), ("Tempo Runner 3 (men)", MEN_SHOE),
        ("Cloudline Daily (women)", WOMEN_SHOE), ("Cloudline Daily (men)", MEN_SHOE),
        ("Stride Pro Racer", SHOE_SIZES), ("Harbour Trainer", SHOE_SIZES),
        ("Lightfoot 2 (women)", WOMEN_SHOE), ("Lightfoot 2 (men)", MEN_SHOE)]),
    ("trail-shoes", "TRL", [
        ("Ridgeback GTX (women)", WOMEN_SHOE), ("Ridgeback GTX (men)", MEN_SHOE),
        ("Scree Runner", SHOE_SIZES), ("Fell Grip", SHOE_SIZES), ("Summit Trail 4", SHOE_SIZES)]),
    ("sneakers", "SNK", [
        ("Court Classic", SHOE_SIZES), ("Canal Low", SHOE_SIZES), ("Canal High", SHOE_SIZES),
        ("Courier Suede", SHOE_SIZES), ("Plimsoll Canvas", SHOE_SIZES), ("Retro 84 (women)", WOMEN_SHOE),
        ("Retro 84 (men)", MEN_SHOE)]),
    ("boots", "BOT", [
        ("Chelsea Boot Leather", SHOE_SIZES), ("Hiker Mid (women)", WOMEN_SHOE),
        ("Hiker Mid (men)", MEN_SHOE), ("Winter Lace-up", SHOE_SIZES), ("Rain Boot", SHOE_SIZES)]),
    ("tops", "TOP", [
        ("Merino Long Sleeve", APPAREL), ("Breton Stripe Top", APPAREL), ("Linen Shirt", APPAREL),
        ("Oxford Shirt", APPAREL), ("Running Singlet", APPAREL)]),
    ("t-shirts", "TEE", [
        ("Organic Crew Tee", APPAREL), ("Pocket Tee", APPAREL), ("Logo Tee", APPAREL),
        ("Tech Running Tee", APPAREL), ("Boxy Tee", APPAREL), ("V-neck Tee", APPAREL)]),
    ("hoodies", "HOD", [
        ("Heavyweight Hoodie", APPAREL), ("Zip Hoodie", APPAREL), ("Fleece Hoodie", APPAREL),
        ("Cropped Hoodie", APPAREL)]),
    ("jeans", "JNS", [
        ("Straight Jeans", APPAREL), ("Slim Jeans", APPAREL), ("Wide Leg Jeans", APPAREL),
        ("Relaxed Jeans", APPAREL), ("Selvedge Jeans", APPAREL)]),
    ("dresses", "DRS", [
        ("Wrap Dress", APPAREL[:5]), ("Shirt Dress", APPAREL[:5]), ("Knit Midi Dress", APPAREL[:5]),
        ("Slip Dress", APPAREL[:5])]),
    ("jackets", "JKT", [
        ("Packable Rain Jacket", APPAREL), ("Down Puffer", APPAREL), ("Denim Jacket", APPAREL),
        ("Running Wind Shell", APPAREL), ("Wool Overshirt", APPAREL)]),
    ("socks", "SCK", [
        ("Running Socks 3-pack", APPAREL[1:5]), ("Merino Hiking Socks", APPAREL[1:5]),
        ("Everyday Crew Socks", APPAREL[1:5])]),
    ("coffee-beans", "BNS", [
        ("House Blend Beans 250g", ONE_SIZE), ("Ethiopia Yirgacheffe Beans 250g", ONE_SIZE),
        ("Colombia Huila Beans 250g", ONE_SIZE), ("Decaf Blend Beans 250g", ONE_SIZE),
        ("Espresso Roast Beans 1kg", ONE_SIZE)]),
    ("coffee-gear", "GEAR", [
        ("Pour-over Dripper", ONE_SIZE), ("Hand Grinder", ONE_SIZE), ("Travel Mug", ONE_SIZE),
        ("French Press", ONE_SIZE)]),
    ("gift-cards", "GFT", [
        ("Gift Card 25", ONE_SIZE), ("Gift Card 50", ONE_SIZE), ("Gift Card 100", ONE_SIZE)]),
]
COFFEE = {"coffee-beans", "coffee-gear"}
# Share of the (non-coffee) range each store format carries, and of each item's sizes.
CARRY = {"flagship": (0.45, 1.0), "standard": (0.20, 0.8), "express": (0.12, 0.6)}
COFFEE_BAR = {"flagship": 1.0, "standard": 0.4, "express": 0.0}


# ------------------------------------------------------------------ generation
def scatter(rng: random.Random, lat: float, lon: float, sigma: float, max_km: float) -> tuple[float, float]:
    r = min(abs(rng.gauss(0.0, sigma)), max_km)
    theta = rng.uniform(0.0, 2.0 * math.pi)
    dlat = r * math.cos(theta) / KM_PER_DEG_LAT
    dlon = r * math.sin(theta) / (KM_PER_DEG_LAT * math.cos(math.radians(lat)))
    return round(lat + dlat, 5), round(lon + dlon, 5)


def pick_format(rng: random.Random) -> str:
    x, acc = rng.random(), 0.0
    for name, share in FORMATS:
        acc += share
        if x < acc:
            return name
    return FORMATS[-1][0]


#: The time zone each city's opening hours are in (the stores.csv tz column).
CITY_TZ = {"London": "Europe/London", "Manchester": "Europe/London", "Berlin": "Europe/Berlin",
           "Munich": "Europe/Berlin", "Paris": "Europe/Paris", "Lyon": "Europe/Paris",
           "Amsterdam": "Europe/Amsterdam", "Rotterdam": "Europe/Amsterdam", "New York": "America/New_York"}


#: The region whose public holidays PH means (the stores.csv country column): Berlin and Munich
#: are in different states, with different holidays (Women's Day in Berlin; Epiphany, Corpus
#: Christi and All Saints' Day in Bavaria).
CITY_REGION = {"London": "GB-ENG", "Manchester": "GB-ENG", "Berlin": "DE-BE", "Munich": "DE-BY",
               "Paris": "FR", "Lyon": "FR", "Amsterdam": "NL", "Rotterdam": "NL", "New York": "US-NY"}


def make_stores(rng: random.Random) -> list[dict]:
    stores = []
    for city, country, lat, lon, count, sigma, max_km, hoods in CITIES:
        names = list(hoods)
        rng.shuffle(names)
        for i in range(count):
            base = names[i % len(names)]
            name = base if i < len(names) else f"{base} {NAME_SUFFIXES[(i // len(names) - 1) % len(NAME_SUFFIXES)]}"
            fmt = "flagship" if i == 0 else pick_format(rng)  # every city has a flagship
            slat, slon = scatter(rng, lat, lon, sigma, max_km)
            address = street_address(country, rng.randint(1, 240), rng.choice(STREETS[country]))
            stores.append({"id": f"s{len(stores) + 1:03d}", "name": name, "address": address, "city": city,
                           "lat": f"{slat:.5f}", "lon": f"{slon:.5f}", "hours": f"{HOURS[(country, fmt)]}; {HOLIDAYS[country]}",
                           "tz": CITY_TZ[city], "country": CITY_REGION[city], "_format": fmt})
    return stores


def make_catalog() -> list[dict]:
    items = []
    for category, prefix, products in CATALOG:
        for n, (name, sizes) in enumerate(products, start=1):
            items.append({"sku": f"{prefix}-{n:03d}", "name": name, "category": category,
                          "sizes": " ".join(sizes)})
    return items


def quantity(rng: random.Random, category: str, size_weight: float) -> int:
    """Mostly zeros and low counts; coffee and gift cards run deeper."""
    if category == "gift-cards":
        return rng.choice([0, 15, 20, 25, 40, 50])
    if category == "coffee-beans":
        return 0 if rng.random() < 0.15 else rng.randint(1, 24)
    if rng.random() < 0.30 / size_weight:
        return 0
    return min(12, max(1, int(rng.expovariate(0.55 / size_weight)) + 1))


def size_weight(sizes: list[str], i: int) -> float:
    """Middle sizes sell (and are stocked) more than the edges: 0.6..1.0."""
    if len(sizes) == 1:
        return 1.0
    centre = (len(sizes) - 1) / 2.0
    return 1.0 - 0.4 * abs(i - centre) / centre


def make_inventory(rng: random.Random, stores: list[dict], catalog: list[dict]) -> list[dict]:
    rows = []
    for store in stores:
        fmt = store["_format"]
        carry_share, size_share = CARRY[fmt]
        coffee_bar = rng.random() < COFFEE_BAR[fmt]
        for item in catalog:
            cat = item["category"]
            if cat in COFFEE:
                if not coffee_bar or rng.random() < 0.2:
                    continue
            elif cat == "gift-cards":
                pass
            elif rng.random() >= carry_share:
                continue
            sizes = item["sizes"].split()
            for i, size in enumerate(sizes):
                w = size_weight(sizes, i)
                if len(sizes) > 1 and rng.random() > size_share * (0.5 + 0.5 * w):
                    continue
                rows.append({"store": store["id"], "sku": item["sku"], "size": size,
                             "quantity": str(quantity(rng, cat, w))})
    return rows


def to_csv(columns: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def generate() -> dict[str, str]:
    """File name -> text, for the three files."""
    rng = random.Random(SEED)
    stores = make_stores(rng)
    catalog = make_catalog()
    inventory = make_inventory(rng, stores, catalog)
    return {
        "stores.csv": to_csv(["id", "name", "address", "city", "lat", "lon", "hours", "tz", "country"], stores),
        "catalog.csv": to_csv(["sku", "name", "category", "sizes"], catalog),
        "inventory.csv": to_csv(["store", "sku", "size", "quantity"], inventory),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE, help="directory to write (default: next to this script)")
    ap.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    args = ap.parse_args(argv)
    files = generate()
    if args.check:
        stale = [n for n, text in files.items()
                 if not (args.out / n).exists() or (args.out / n).read_text(encoding="utf-8") != text]
        for n in stale:
            print(f"{args.out / n} differs from what generate.py writes", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for n, text in files.items():
        (args.out / n).write_text(text, encoding="utf-8", newline="")
        print(f"wrote {args.out / n}: {text.count(chr(10)) - 1} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
