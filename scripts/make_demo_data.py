"""Generate the bundled demo datasets in assets/demo/ (deterministic for a seed).

    python scripts/make_demo_data.py            # all three
    python scripts/make_demo_data.py --only text images

The generated files are committed, so running the app never needs this script (or espeak-ng).
- topics.csv         4 topics x 100 English sentences: hand-written + several template families
                     with shared, overlapping vocabulary (no single keyword gives the class away)
- shapes.zip         4 shapes x 60 images, 64x64 RGB: random colour, size, position, rotation,
                     filled or outlined, on textured noisy backgrounds (drawn with PIL, 4x supersampled)
- spoken_words.zip   8 command words x 25 clips spoken by espeak-ng with many voices, speeds and
                     pitches; 16 kHz mono FLAC with light noise and random leading silence
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import random
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "assets" / "demo"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: regenerating gives byte-identical archives


def write_zip(path: Path, files: list[tuple[str, bytes]], compress: bool) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)


# ====================================================================== text

HAND = {
    "sports": [
        "The heat was brutal, but she still won her heat by two seconds.",
        "He has been on a hot streak since the start of the season.",
        "The match was played in pouring rain and ended goalless.",
        "They celebrated the title with a huge cake in the dressing room.",
        "The stadium was freezing, yet the fans kept singing until the final whistle.",
        "Nobody expected a nineteen-year-old to beat the defending champion in straight sets.",
        "Our under-twelves lost again, but the coach says their passing is getting better.",
        "A late penalty decided the derby, and half the town is still arguing about it.",
        "She swam the last length faster than anyone in the pool has this year.",
        "The referee needed the video replay twice before allowing the goal.",
        "After the transfer window closed, the club had spent more than ever before.",
        "The marathon route goes past the old harbour and finishes in the park.",
        "He retired at thirty-four after fifteen seasons with the same team.",
        "I still can't believe they threw away a three-goal lead in the second half.",
        "The cyclists climbed the mountain pass in thick fog.",
        "Training was moved indoors because the pitch was waterlogged.",
        "Their new signing has not scored in eight games.",
        "The golf tournament was suspended when lightning was spotted near the course.",
        "Which team do you support in the cup final?",
        "The players ate pasta the night before the big race.",
        "Fans queued outside the arena for hours to get autographs.",
        "The wicket was dry and the spinners took six wickets before lunch.",
    ],
    "tech": [
        "The new phone is so hot right now that stores ran out in a day.",
        "All our photos are backed up to the cloud every night.",
        "Clear your cookies if the website keeps logging you out.",
        "The chip shortage delayed the launch of the console.",
        "The forecast app crashed whenever I opened the radar map.",
        "My laptop fan sounds like a jet engine when I open too many browser tabs.",
        "The update finally lets you schedule messages and edit them after sending.",
        "Someone on the team pushed a password to the public repository by mistake.",
        "The smart fridge needs a firmware update before it will connect to the app.",
        "Is sixteen gigabytes of memory enough for editing video?",
        "The outage started when a single configuration change reached every server at once.",
        "Open-source developers patched the vulnerability within hours of the report.",
        "The streaming service added a cooking channel and a live sports package.",
        "Battery life is great, but the charger gets uncomfortably warm.",
        "Our office printer still refuses to talk to the new network.",
        "The keyboard on this tablet is surprisingly good for writing code.",
        "She built a tiny weather station with a microcontroller and a few sensors.",
        "The model runs offline on the phone, so nothing leaves the device.",
        "A bug in the spreadsheet software rounded every price to the nearest pound.",
        "You can mirror your screen to the television with one tap.",
        "The game studio delayed the release to fix crashes on older graphics cards.",
        "Data centres use enormous amounts of water to keep servers cool.",
    ],
    "food": [
        "A hot bowl of soup is perfect on a rainy day.",
        "Bake the cookies at 180 degrees for twelve minutes.",
        "The team dinner after the match was a huge plate of pasta.",
        "The chips were crispy and the fish was perfectly flaky.",
        "My grandmother never measures anything, yet her bread is always perfect.",
        "The curry was so spicy that I needed two glasses of milk.",
        "Let the dough rest overnight in the fridge for a better crust.",
        "We found a tiny noodle shop that only opens at lunchtime.",
        "Is it safe to freeze cooked rice and reheat it later?",
        "The tomatoes from the market tasted like summer.",
        "Whisk the eggs with a little sugar until they turn pale.",
        "The new bakery sells out of croissants before nine in the morning.",
        "I burnt the garlic again, so the whole kitchen smells bitter.",
        "Their lemon tart is sharp, sweet and impossible to share.",
        "You can swap the butter for olive oil in most of these recipes.",
        "The street market has stalls selling dumplings, tacos and fresh juice.",
        "We had ice cream on the beach even though it was windy.",
        "Slow-cooked beans are cheap, filling and better the next day.",
        "The chef uses an app to track every order in the kitchen.",
        "Roast the vegetables until the edges are dark and sticky.",
        "This cheese needs to breathe for an hour before serving.",
        "Breakfast was pancakes with berries and far too much syrup.",
    ],
    "weather": [
        "It will be cool enough tonight to need a jacket.",
        "The storm knocked out power lines and the internet across the region.",
        "The heat will peak on Saturday afternoon.",
        "Snow could delay Sunday's match at the stadium.",
        "Fog should lift by lunchtime, leaving a bright afternoon.",
        "The river burst its banks after three days of heavy rain.",
        "Frost on the windscreen made everyone late for work.",
        "The wind was so strong that the ferry crossings were cancelled.",
        "A rainbow appeared over the hills just after the shower passed.",
        "Do you think it will snow before the holidays?",
        "The humidity makes thirty degrees feel much hotter.",
        "Hailstones the size of marbles dented cars in the car park.",
        "Farmers are worried because it has not rained properly since April.",
        "Sea breezes will keep the coast a few degrees cooler than inland.",
        "Thunder rolled across the valley for most of the night.",
        "The morning will start grey and damp, but the clouds break later.",
        "Drivers should take care on icy roads in the north.",
        "It was the warmest October night since records began.",
        "A band of showers moves east during the afternoon.",
        "The air feels heavy, like a storm is on its way.",
        "The sun finally came out after a week of drizzle.",
        "Gusts tore the roof off a barn near the coast.",
    ],
}

W = {
    "team": ["the Rovers", "United", "the home side", "the visitors", "our local club", "the national team", "the Hawks", "City", "the students", "the champions"],
    "person": ["the striker", "the goalkeeper", "the captain", "the young midfielder", "the veteran sprinter", "the rookie", "the defender", "their star player", "the substitute", "the world number one"],
    "event": ["the final", "the semi-final", "the derby", "the tournament", "the league match", "the relay", "the opening game", "the championship decider", "the away game", "the cup tie"],
    "sport": ["football", "tennis", "basketball", "cricket", "rugby", "hockey", "volleyball", "cycling", "swimming", "athletics"],
    "score": ["2-1", "3-0", "1-1", "4-3", "by six points", "by a single run", "on penalties", "in extra time"],
    "when": ["on Saturday", "last night", "last weekend", "on Tuesday evening", "yesterday", "this afternoon", "last month"],
    "future": ["this weekend", "tomorrow", "next month", "on Saturday", "next season", "after the break"],
    "product": ["laptop", "smartphone", "tablet", "graphics card", "router", "smartwatch", "e-reader", "games console", "smart speaker", "home server"],
    "company": ["a startup in Berlin", "the chip maker", "the software company", "a cloud provider", "the phone maker", "a small open-source team", "the social network", "the search company"],
    "feature": ["battery life", "screen", "camera", "memory", "processor", "storage", "speaker", "keyboard", "fingerprint reader", "user interface"],
    "bug": ["a login bug", "a security hole", "random crashes", "a memory leak", "slow start-up times", "a broken sync feature", "overheating", "a Wi-Fi dropout"],
    "problem": ["freezing", "rebooting", "losing its connection", "draining the battery", "running slowly", "showing a blank screen", "forgetting my settings"],
    "tech_action": ["deploy an app", "store files", "train a model", "encrypt backups", "share a screen", "stream a game", "translate a document"],
    "dish": ["soup", "pasta", "curry", "bread", "salad", "pancakes", "risotto", "stew", "dumplings", "pie", "omelette", "noodles", "lasagne", "flatbread"],
    "dessert": ["chocolate cake", "apple crumble", "cheesecake", "a bowl of ice cream", "fruit salad", "lemon tart", "cookies"],
    "ingredient": ["garlic", "basil", "lemon", "butter", "chilli", "ginger", "mushrooms", "onions", "tomatoes", "cheese", "spinach", "chickpeas", "coconut milk", "honey"],
    "spice": ["salt", "cumin", "paprika", "cinnamon", "nutmeg", "black pepper", "turmeric"],
    "method": ["Roast", "Simmer", "Fry", "Steam", "Grill", "Soften", "Toast", "Caramelise"],
    "place": ["the bakery on the corner", "the new bistro", "the street market", "the food truck by the station", "that family restaurant", "the canteen at work", "my aunt's kitchen"],
    "taste": ["delicious", "far too salty", "wonderfully fresh", "a bit bland", "rich and creamy", "perfectly crisp", "surprisingly sweet", "overcooked"],
    "phenomenon": ["rain", "snow", "thunderstorms", "fog", "hail", "sunshine", "strong winds", "drizzle", "sleet", "frost", "heavy showers"],
    "where": ["the coast", "the northern hills", "the valley", "the city centre", "the mountains", "the western counties", "the islands", "inland areas", "the south-east"],
    "wtime": ["tomorrow morning", "this weekend", "on Tuesday", "overnight", "later this afternoon", "by the evening", "early next week", "during the rush hour"],
    "sky": ["clear", "grey", "cloudy", "hazy", "bright", "overcast", "stormy"],
    "severity": ["yellow", "amber", "red", "severe", "flood"],
    "relative": ["grandfather", "sister", "neighbour", "flatmate", "dad", "aunt"],
}

TEMPLATES = {
    "sports": [
        "{person} scored {minute} in {event}, and {team} held on to win {score}.",
        "{team} beat {team2} {score} {when}.",
        "After {n} games without a win, {team} finally turned things around in {event}.",
        "Tickets for {event} sold out in {n} minutes.",
        "Who do you think will win {event} {future}?",
        "{Person} was injured in training and will miss {event}.",
        "The {sport} season starts {future}, and {team} look stronger than last year.",
        "{Person} broke the club record with {n} points in {event}.",
        "Fans booed when {person} was substituted early in {event}.",
        "{team} have signed {person} from their rivals on a {n}-year contract.",
        "I watched {event} {when}; {team} looked tired after the break.",
        "Our {sport} coach wants extra practice {future} before {event}.",
    ],
    "tech": [
        "The new {product} has a better {feature} but a weaker {feature2}.",
        "{Company} released an update {when} that fixes {bug}.",
        "My {product} keeps {problem} after the latest update.",
        "Engineers at {company} showed a {product} that can {tech_action} without a cable.",
        "Reviewers loved the {feature} of the {product} but not its price.",
        "Is it worth upgrading my {product} just for the {feature}?",
        "An outage at {company} took down thousands of websites for {n} hours.",
        "Developers can now {tech_action} with a single command.",
        "The {product} from {company} will cost {n}0 pounds more than last year's model.",
        "I reset my {product} to factory settings, but it is still {problem}.",
        "{Company} admitted {bug} affected millions of accounts.",
        "You can {tech_action} straight from the {product} once you install the app.",
    ],
    "food": [
        "{Method} the {ingredient} for {n} minutes before adding the {ingredient2}.",
        "The {dish} at {place} was {taste}, but the {dish2} was {taste2}.",
        "This {dish} recipe needs a handful of {ingredient} and a pinch of {spice}.",
        "We ordered {dish} and {dish2} and shared {dessert}.",
        "{Place} makes the best {dish} I have ever tasted.",
        "Should I use {ingredient} or {ingredient2} in a {dish}?",
        "Preheat the oven to {temp} degrees and bake the {dish} until golden.",
        "My {relative} makes {dish} every Sunday with {ingredient} from the garden.",
        "Season the {dish} with {spice} and finish it with a little {ingredient}.",
        "I tried {place} {when}, and the {dessert} made the trip worthwhile.",
        "Leftover {dish} tastes even better with extra {ingredient}.",
        "For a quick lunch, toss {ingredient} and {ingredient2} through warm {dish}.",
    ],
    "weather": [
        "Expect {phenomenon} across {where} {wtime}, with temperatures around {temp_w} degrees.",
        "A {severity} warning for {phenomenon} has been issued for {where}.",
        "The {phenomenon} should clear {wtime}, leaving {sky} skies.",
        "It has been {sky} all week, and more {phenomenon} is expected {wtime}.",
        "Do I need an umbrella {wtime}, or will the {phenomenon} hold off?",
        "Winds of up to {n}0 km/h are likely along {where} {wtime}.",
        "{Sky} skies {wtime} will give way to {phenomenon} in {where}.",
        "Temperatures in {where} could drop to {temp_w} degrees {wtime}.",
        "Patchy {phenomenon} will affect {where} {wtime} before it turns {sky}.",
        "Forecasters say {where} could see its first {phenomenon} of the year {wtime}.",
        "Yesterday's {phenomenon} flooded several roads in {where}.",
        "After the {sky} start, {phenomenon} will spread to {where} {wtime}.",
    ],
}

MINUTES = ["in the first minute", "just before half-time", "in stoppage time", "late on", "early", "twice"]


def _fill(tpl: str, rng: random.Random) -> str:
    vals = {}
    for k, words in W.items():
        picks = rng.sample(words, 2)
        vals[k], vals[k + "2"] = picks
        vals[k.capitalize()] = picks[0][0].upper() + picks[0][1:]
    vals.update(n=rng.randint(2, 9), minute=rng.choice(MINUTES), temp=rng.choice([160, 180, 190, 200, 220]),
                temp_w=rng.randint(-5, 34))
    out = tpl.format(**vals)
    return out[0].upper() + out[1:]


def make_topics(out: Path, seed: int, per_class: int = 100) -> Path:
    rng = random.Random(seed)
    rows = []
    for label in sorted(HAND):
        seen = set(HAND[label])
        texts = list(HAND[label])
        tries = 0
        while len(texts) < per_class and tries < 10000:
            tries += 1
            t = _fill(rng.choice(TEMPLATES[label]), rng)
            if t not in seen:
                seen.add(t)
                texts.append(t)
        rows += [(t, label) for t in texts]
    rng.shuffle(rows)
    path = out / "topics.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


# ====================================================================== images

SHAPES = ["circle", "square", "triangle", "star"]
S = 4  # supersampling factor
SIZE = 64


def _background(rng: np.random.Generator) -> np.ndarray:
    c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    kind = rng.integers(0, 4)
    if kind == 0:  # linear gradient in a random direction
        a = rng.uniform(0, 2 * math.pi)
        t = (np.cos(a) * xx + np.sin(a) * yy + 1.5) / 3
    elif kind == 1:  # stripes
        a, period = rng.uniform(0, math.pi), rng.uniform(6, 16)
        t = 0.5 + 0.5 * np.sin((np.cos(a) * xx + np.sin(a) * yy) * SIZE * 2 * math.pi / period)
        t = 0.35 + 0.3 * t
    elif kind == 2:  # checkerboard, low contrast
        cell = rng.integers(6, 14)
        t = (((np.arange(SIZE)[:, None] // cell) + (np.arange(SIZE)[None, :] // cell)) % 2) * 0.35 + 0.3
    else:  # blotchy cloud texture: coarse noise upsampled
        from PIL import Image

        coarse = (rng.random((6, 6)) * 255).astype(np.uint8)
        t = np.asarray(Image.fromarray(coarse).resize((SIZE, SIZE), Image.BICUBIC), dtype=np.float64) / 255
    bg = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
    return bg


def _polygon(kind: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    if kind == "square":
        angles, radii = [rot + math.pi / 4 + k * math.pi / 2 for k in range(4)], [r] * 4
    elif kind == "triangle":
        angles, radii = [rot + k * 2 * math.pi / 3 for k in range(3)], [r] * 3
    else:  # star: 5 points, inner radius ~0.42
        inner = r * 0.42
        angles = [rot + k * math.pi / 5 for k in range(10)]
        radii = [r if k % 2 == 0 else inner for k in range(10)]
    return [(cx + rr * math.cos(a), cy + rr * math.sin(a)) for a, rr in zip(angles, radii)]


def _shape_image(kind: str, rng: np.random.Generator):
    from PIL import Image, ImageDraw

    bg = _background(rng)
    mean = bg.reshape(-1, 3).mean(0)
    for _ in range(50):  # a colour that stands out from the background
        col = rng.integers(0, 256, 3)
        if np.abs(col - mean).sum() > 200:
            break
    r = rng.uniform(11, 25)
    if kind == "circle":
        r *= 0.85  # equal visual area with the polygons
    cx, cy = rng.uniform(r * 0.9, SIZE - r * 0.9, 2)
    rot = rng.uniform(0, 2 * math.pi)
    big = Image.fromarray(np.repeat(np.repeat(bg.astype(np.uint8), S, 0), S, 1))
    d = ImageDraw.Draw(big)
    # A few thin distractor strokes, so the shape is not the only thing in the picture.
    for _ in range(rng.integers(0, 3)):
        x0, y0 = rng.uniform(0, SIZE * S, 2)
        ang, ln = rng.uniform(0, 2 * math.pi), rng.uniform(5, 14) * S
        d.line([(x0, y0), (x0 + ln * math.cos(ang), y0 + ln * math.sin(ang))],
               fill=tuple(int(v) for v in rng.integers(0, 256, 3)), width=S)
    fill = tuple(int(v) for v in col)
    outline_only = rng.random() < 0.25
    width = int(rng.integers(2, 4) * S)
    if kind == "circle":
        box = [(cx - r) * S, (cy - r) * S, (cx + r) * S, (cy + r) * S]
        d.ellipse(box, fill=None if outline_only else fill, outline=fill, width=width if outline_only else 0)
    else:
        pts = [(x * S, y * S) for x, y in _polygon(kind, cx, cy, r, rot)]
        if outline_only:
            d.line(pts + [pts[0], pts[1]], fill=fill, width=width, joint="curve")
        else:
            d.polygon(pts, fill=fill)
    img = np.asarray(big.resize((SIZE, SIZE), Image.LANCZOS), dtype=np.float64)
    img += rng.normal(0, rng.uniform(2, 8), img.shape)  # sensor-like noise
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_shapes(out: Path, seed: int, per_class: int = 60) -> Path:
    rng = np.random.default_rng(seed)
    files = []
    for kind in SHAPES:
        for i in range(per_class):
            img = _shape_image(kind, rng)
            buf = io.BytesIO()
            if i % 6 == 5:  # one in six PNG, the rest JPEG: both decoders get exercised
                img.save(buf, "PNG", optimize=True)
                ext = "png"
            else:
                img.save(buf, "JPEG", quality=88)
                ext = "jpg"
            files.append((f"{kind}/{kind}_{i:03d}.{ext}", buf.getvalue()))
    path = out / "shapes.zip"
    write_zip(path, files, compress=False)  # JPEG/PNG are compressed already
    return path


# ====================================================================== audio

WORDS = ["yes", "no", "up", "down", "left", "right", "stop", "go"]
LANGS = ["en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
VARIANTS = [f"m{i}" for i in range(1, 8)] + [f"f{i}" for i in range(1, 5)] + ["klatt", "Andy", "Annie", "Michael", "steph", "john", "linda", "paul"]
TARGET_SR = 16000


def _espeak(word: str, voice: str, speed: int, pitch: int, tmp: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    wav = tmp / "clip.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), word],
                   check=True, capture_output=True)
    data, sr = sf.read(wav, dtype="float32")
    return data, sr


def make_spoken_words(out: Path, seed: int, per_class: int = 25) -> Path | None:
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is not installed: skipping spoken_words.zip (the committed archive is the artefact; "
              "install it with `apt-get install espeak-ng` to regenerate)", file=sys.stderr)
        return None
    import soundfile as sf

    sys.path.insert(0, str(ROOT))
    from lepton.data.audio import resample

    rng = np.random.default_rng(seed)
    files = []
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        for word in WORDS:
            for i in range(per_class):
                voice = f"{LANGS[rng.integers(len(LANGS))]}+{VARIANTS[rng.integers(len(VARIANTS))]}"
                speed, pitch = int(rng.integers(120, 201)), int(rng.integers(20, 81))
                try:
                    wave, sr = _espeak(word, voice, speed, pitch, tmp)
                except subprocess.CalledProcessError:
                    wave, sr = _espeak(word, "en-us", speed, pitch, tmp)
                wave = resample(wave, sr, TARGET_SR)
                # Trim espeak's own silence, then add our own random lead-in and a short tail.
                loud = np.flatnonzero(np.abs(wave) > 0.02 * np.abs(wave).max())
                wave = wave[loud[0] : loud[-1] + 1] if loud.size else wave
                wave = wave / (np.abs(wave).max() + 1e-9) * rng.uniform(0.3, 0.9)
                lead = np.zeros(int(rng.uniform(0.02, 0.3) * TARGET_SR), np.float32)
                tail = np.zeros(int(rng.uniform(0.03, 0.1) * TARGET_SR), np.float32)
                wave = np.concatenate([lead, wave, tail])
                # Light noise, a few LSBs of 16-bit: audible as hiss, cheap for FLAC to store.
                wave = wave + rng.normal(0, rng.uniform(1, 3.5) / 32768, wave.shape)
                buf = io.BytesIO()
                sf.write(buf, np.clip(wave, -1, 1).astype(np.float32), TARGET_SR, format="FLAC", subtype="PCM_16")
                files.append((f"{word}/{word}_{i:03d}.flac", buf.getvalue()))
    path = out / "spoken_words.zip"
    write_zip(path, files, compress=False)
    return path


# ====================================================================== main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", choices=["text", "images", "audio"], default=["text", "images", "audio"])
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    made = []
    if "text" in a.only:
        made.append(make_topics(a.out, a.seed))
    if "images" in a.only:
        made.append(make_shapes(a.out, a.seed))
    if "audio" in a.only:
        made.append(make_spoken_words(a.out, a.seed))
    for m in made:
        if m is not None:
            print(f"{m.relative_to(a.out.parent) if a.out.parent in m.parents else m}: {m.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
