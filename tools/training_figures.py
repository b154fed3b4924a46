"""Loss curves (PNG, drawn with Pillow) and the first / last image grids of a training run.

    python tools/training_figures.py out/evidence docs/training

Reads RUN/stats.jsonl (one line per tick) and writes OUT/curves.png, plus copies of
RUN/reals.png and the first and last RUN/fakes-*.png grids.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

PANELS = (  # (title, stats keys); each key gets its own colour
    ("G loss (softplus(-D(fake)), mean over views)", ("G_loss",)),
    ("D loss (fake + real)", ("D_loss",)),
    ("D logits", ("D_real", "D_fake")),
    ("R1 penalty", ("R1",)),
    ("KNN regulariser (level-0 anchors)", ("knn",)),
    ("D-input blur sigma (px)", ("blur_sigma",)),
)
COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44))
PANEL_W, PANEL_H, MARGIN = 420, 230, 48


def _ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """About ``count`` round tick values covering [lo, hi]."""
    span = hi - lo if hi > lo else abs(hi) or 1.0
    step = 10 ** math.floor(math.log10(span / count))
    step *= next(m for m in (1, 2, 5, 10) if span / (step * m) <= count)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _panel(rows: list[dict], title: str, keys: tuple[str, ...], font) -> Image.Image:
    image = Image.new("RGB", (PANEL_W, PANEL_H), "white")
    draw = ImageDraw.Draw(image)
    series = {k: [(r["kimg"], r[k]) for r in rows if k in r] for k in keys}
    points = [p for s in series.values() for p in s]
    draw.text((MARGIN, 6), title, fill="black", font=font)
    if not points:
        return image
    x0, x1 = 0.0, max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    pad = (y1 - y0) * 0.05 or 0.5
    y0, y1 = y0 - pad, y1 + pad
    left, top, right, bottom = MARGIN, 24, PANEL_W - 12, PANEL_H - 30

    def xy(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0 or 1) * (right - left), bottom - (y - y0) / (y1 - y0) * (bottom - top))

    draw.rectangle((left, top, right, bottom), outline=(160, 160, 160))
    for y in _ticks(y0, y1):
        _, py = xy(x0, y)
        draw.line((left, py, right, py), fill=(235, 235, 235))
        draw.text((4, py - 6), f"{y:.3g}", fill="black", font=font)
    for x in _ticks(x0, x1):
        px, _ = xy(x, y0)
        draw.text((px - 8, bottom + 4), f"{x:g}", fill="black", font=font)
    draw.text((right - 30, bottom + 16), "kimg", fill="black", font=font)
    for i, (key, s) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        if len(s) > 1:
            draw.line([xy(*p) for p in s], fill=colour, width=2)
        if len(keys) > 1:
            draw.text((right - 70, top + 4 + 12 * i), key, fill=colour, font=font)
    return image


def curves(rows: list[dict]) -> Image.Image:
    font = ImageFont.load_default()
    columns = 2
    sheet = Image.new("RGB", (columns * PANEL_W, math.ceil(len(PANELS) / columns) * PANEL_H), "white")
    for i, (title, keys) in enumerate(PANELS):
        sheet.paste(_panel(rows, title, keys, font), ((i % columns) * PANEL_W, (i // columns) * PANEL_H))
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="training run folder")
    parser.add_argument("out", type=Path, help="folder for curves.png and the grids")
    args = parser.parse_args()
    rows = [json.loads(line) for line in (args.run / "stats.jsonl").read_text().splitlines() if line.strip()]
    if not rows:
        parser.error(f"{args.run / 'stats.jsonl'} has no ticks yet")
    args.out.mkdir(parents=True, exist_ok=True)
    curves(rows).save(args.out / "curves.png")
    grids = sorted(args.run.glob("fakes-*.png"))
    copies = {"reals.png": args.run / "reals.png", "fakes-first.png": grids[0], "fakes-last.png": grids[-1]}
    for name, src in copies.items():
        shutil.copyfile(src, args.out / name)
    print(f"wrote {args.out / 'curves.png'} ({len(rows)} ticks, {rows[-1]['kimg']:.3f} kimg) and the grids "
          f"{grids[0].name}, {grids[-1].name}")  # fmt: skip


if __name__ == "__main__":
    main()
