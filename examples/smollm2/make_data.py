"""Generate the "terse capitals" dataset of the embedded default (deterministic).

The user asks for a country's capital in varied phrasings; the assistant answers
with ONLY the city name. The base model answers in full sentences, so an
exact-match evaluation scores it near 0 and a trained adapter clearly higher.

Well-known countries are held out for evaluation (the base knows their capitals,
so the eval measures the answer format, not new knowledge)::

    python examples/smollm2/make_data.py   # rewrites data/train.jsonl and data/heldout.jsonl
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HELDOUT = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo",
    "China": "Beijing", "Russia": "Moscow", "the United Kingdom": "London", "Canada": "Ottawa",
    "Australia": "Canberra", "Egypt": "Cairo", "Kenya": "Nairobi", "India": "New Delhi",
    "Mexico": "Mexico City", "Argentina": "Buenos Aires", "Peru": "Lima", "Chile": "Santiago",
    "Greece": "Athens", "Portugal": "Lisbon", "Poland": "Warsaw", "Sweden": "Stockholm", "Norway": "Oslo",
    "the Netherlands": "Amsterdam", "Turkey": "Ankara", "Iran": "Tehran", "Thailand": "Bangkok",
    "South Korea": "Seoul", "Vietnam": "Hanoi", "the Philippines": "Manila", "Ireland": "Dublin",
    "Austria": "Vienna", "Hungary": "Budapest", "Denmark": "Copenhagen", "Finland": "Helsinki",
    "Cuba": "Havana", "Switzerland": "Bern", "New Zealand": "Wellington", "Belgium": "Brussels",
    "the Czech Republic": "Prague", "Ukraine": "Kyiv",
}  # fmt: skip

TRAIN = {
    "Afghanistan": "Kabul", "Albania": "Tirana", "Algeria": "Algiers", "Andorra": "Andorra la Vella",
    "Angola": "Luanda", "Armenia": "Yerevan", "Azerbaijan": "Baku", "Bahrain": "Manama",
    "Bangladesh": "Dhaka", "Belarus": "Minsk", "Belize": "Belmopan", "Bhutan": "Thimphu",
    "Botswana": "Gaborone", "Bulgaria": "Sofia", "Burkina Faso": "Ouagadougou", "Cambodia": "Phnom Penh",
    "Chad": "N'Djamena", "Croatia": "Zagreb", "Cyprus": "Nicosia", "Djibouti": "Djibouti",
    "the Dominican Republic": "Santo Domingo", "Ecuador": "Quito", "El Salvador": "San Salvador",
    "Eritrea": "Asmara", "Estonia": "Tallinn", "Ethiopia": "Addis Ababa", "Fiji": "Suva",
    "Gabon": "Libreville", "Georgia": "Tbilisi", "Ghana": "Accra", "Guatemala": "Guatemala City",
    "Guinea": "Conakry", "Guyana": "Georgetown", "Haiti": "Port-au-Prince", "Honduras": "Tegucigalpa",
    "Iceland": "Reykjavik", "Iraq": "Baghdad", "Jamaica": "Kingston", "Jordan": "Amman",
    "Kazakhstan": "Astana", "Kuwait": "Kuwait City", "Kyrgyzstan": "Bishkek", "Laos": "Vientiane",
    "Latvia": "Riga", "Lebanon": "Beirut", "Lesotho": "Maseru", "Liberia": "Monrovia", "Libya": "Tripoli",
    "Liechtenstein": "Vaduz", "Lithuania": "Vilnius", "Luxembourg": "Luxembourg",
    "Madagascar": "Antananarivo",
    "Malawi": "Lilongwe", "Malaysia": "Kuala Lumpur", "Mali": "Bamako", "Malta": "Valletta",
    "Mauritania": "Nouakchott", "Moldova": "Chisinau", "Monaco": "Monaco", "Mongolia": "Ulaanbaatar",
    "Montenegro": "Podgorica", "Morocco": "Rabat", "Mozambique": "Maputo", "Myanmar": "Naypyidaw",
    "Namibia": "Windhoek", "Nepal": "Kathmandu", "Nicaragua": "Managua", "Niger": "Niamey",
    "Nigeria": "Abuja", "North Korea": "Pyongyang", "North Macedonia": "Skopje", "Oman": "Muscat",
    "Pakistan": "Islamabad", "Panama": "Panama City", "Papua New Guinea": "Port Moresby", "Qatar": "Doha",
    "Romania": "Bucharest", "Rwanda": "Kigali", "Saudi Arabia": "Riyadh", "Senegal": "Dakar",
    "Serbia": "Belgrade", "Sierra Leone": "Freetown", "Singapore": "Singapore", "Slovakia": "Bratislava",
    "Slovenia": "Ljubljana", "Somalia": "Mogadishu", "Sudan": "Khartoum", "Suriname": "Paramaribo",
    "Syria": "Damascus", "Tajikistan": "Dushanbe", "Tanzania": "Dodoma", "Tunisia": "Tunis",
    "Turkmenistan": "Ashgabat", "Uganda": "Kampala", "the United Arab Emirates": "Abu Dhabi",
    "Uruguay": "Montevideo", "Uzbekistan": "Tashkent", "Venezuela": "Caracas", "Zambia": "Lusaka",
    "Zimbabwe": "Harare", "Bosnia and Herzegovina": "Sarajevo", "Barbados": "Bridgetown",
    "the Bahamas": "Nassau", "Trinidad and Tobago": "Port of Spain", "Samoa": "Apia",
    "Brunei": "Bandar Seri Begawan", "Equatorial Guinea": "Malabo", "the Gambia": "Banjul",
    "Seychelles": "Victoria", "Mauritius": "Port Louis", "Cape Verde": "Praia", "Comoros": "Moroni",
    "South Sudan": "Juba", "the Central African Republic": "Bangui",
    "the Republic of the Congo": "Brazzaville",
    "the Democratic Republic of the Congo": "Kinshasa",
}  # fmt: skip

PHRASINGS = (
    "What is the capital of {c}?",
    "What's the capital city of {c}?",
    "Capital of {c}?",
    "Which city is the capital of {c}?",
    "Name the capital of {c}.",
    "Tell me the capital of {c}.",
    "Do you know the capital of {c}?",
    "What city serves as the capital of {c}?",
    "I need the capital of {c}.",
    "Quick question: what is the capital of {c}?",
    "In {c}, which city is the capital?",
    "what is {c}'s capital",
    "Can you tell me what the capital of {c} is?",
    "Give me the capital city of {c}.",
    "{c} - capital?",
)
SYSTEMS = (
    "You are a helpful assistant.",
    "Answer geography questions.",
)


def _row(rng: random.Random, country: str, capital: str, phrasing: str) -> dict[str, object]:
    messages: list[dict[str, str]] = []
    if rng.random() < 0.15:
        messages.append({"role": "system", "content": rng.choice(SYSTEMS)})
    question = phrasing.format(c=country)
    messages += [
        {"role": "user", "content": question[0].upper() + question[1:]},
        {"role": "assistant", "content": capital},
    ]
    return {"messages": messages}


def main() -> None:
    """Write data/train.jsonl (3 phrasings per training country) and data/heldout.jsonl."""
    rng = random.Random(20261128)
    out = Path(__file__).parent / "data"
    out.mkdir(exist_ok=True)
    train = []
    for country, capital in TRAIN.items():
        for phrasing in rng.sample(PHRASINGS, 3):
            train.append(_row(rng, country, capital, phrasing))
    rng.shuffle(train)
    heldout = []
    for i, (country, capital) in enumerate(HELDOUT.items()):
        picks = rng.sample(PHRASINGS, 2 if i % 4 == 0 else 1)
        for phrasing in picks:
            heldout.append({"messages": [
                {"role": "user", "content": (q := phrasing.format(c=country))[0].upper() + q[1:]},
                {"role": "assistant", "content": capital},
            ]})  # fmt: skip
    for name, rows in (("train.jsonl", train), ("heldout.jsonl", heldout)):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (out / name).write_text(text, encoding="utf-8")
        print(f"{name}: {len(rows)} rows")


if __name__ == "__main__":
    main()
