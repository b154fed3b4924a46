"""Curves (FID and losses against kimg, drawn with matplotlib) and the first / last image grids of a run.

    python tools/training_figures.py out/train/00000-tiny64-synth docs/training
    python tools/training_figures.py RUN OUT --metric fid5k_full
    python tools/training_figures.py docs/metrics/F2-curve-fid1k.jsonl docs/training --floor 9.14

Reads RUN/stats.jsonl (one line per tick: losses, and metrics measured during
training) and RUN/metric-*.jsonl (results of `cgsgan metrics --network
SNAPSHOT --out RUN`, placed at the kimg their snapshot file records), and writes
OUT/fid.png (when RUN has results of the metric), OUT/curves.png, and copies of
RUN/reals.png and the first and last RUN/fakes-*.png grids. Given a metric file
instead of RUN (the results of a run whose folder is gone, each line with its
``kimg``), it writes OUT/fid.png only. Needs matplotlib.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

PANELS = (  # (title, stats keys)
    ("G loss (softplus(-D(fake)), mean over views)", ("G_loss",)),
    ("D loss (fake + real)", ("D_loss",)),
    ("D logits", ("D_real", "D_fake")),
    ("R1 penalty", ("R1",)),
    ("KNN regulariser (level-0 anchors)", ("knn",)),
    ("D-input blur sigma (px)", ("blur_sigma",)),
)


def read_jsonl(path: Path) -> list[dict]:
    """The complete JSON lines of a file (a torn last line, from a run killed while writing, is dropped)."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def _snapshot_kimg(run: Path, manifest: dict[str, float], network: str) -> float | None:
    """The kimg a snapshot file records: from the run's manifest ({file name: kimg}), else the file's metadata."""
    from cgsgan.train.snapshots import snapshot_training

    path = Path(network)
    if path.name in manifest:
        return manifest[path.name]
    for candidate in (path, run / path.name):
        if candidate.is_file():
            training = snapshot_training(candidate)
            return None if training is None else training["images"] / 1000
    return None


def metric_points(run: Path, metric: str) -> list[tuple[float, float]]:
    """(kimg, value) of ``metric`` from the run's stats.jsonl and metric-<metric>.jsonl, or from one metric
    file ``run``, sorted by kimg; a snapshot measured twice keeps its latest result."""
    points: dict[float, float] = {}
    stats = run / "stats.jsonl"
    for row in read_jsonl(stats) if stats.is_file() else []:
        if row.get(metric) is not None:
            points[round(row["kimg"], 3)] = row[metric]
    results = run if run.is_file() else run / f"metric-{metric}.jsonl"
    run = run.parent if run.is_file() else run
    listed = run / "snapshots.json"
    entries = json.loads(listed.read_text()).get("snapshots", []) if listed.is_file() else []
    manifest = {e["network"]: e["images"] / 1000 for e in entries}
    for row in read_jsonl(results) if results.is_file() else []:
        value = row.get("results", {}).get(metric)
        kimg = row.get("kimg")
        if kimg is None:
            kimg = _snapshot_kimg(run, manifest, row.get("snapshot") or row.get("network") or "")
        if value is not None and kimg is not None:
            points[round(kimg, 3)] = value
    return sorted(points.items())


def fid_figure(points: list[tuple[float, float]], metric: str, floor: float | None = None):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100, layout="constrained")
    ax.plot([p[0] for p in points], [p[1] for p in points], "o-", color="tab:blue", label=metric)
    for kimg, value in points:
        ax.annotate(f"{value:.0f}", (kimg, value), textcoords="offset points", xytext=(0, 6), ha="center",
                    fontsize=8)  # fmt: skip
    if floor is not None:
        ax.axhline(floor, color="tab:green", linestyle="--", label=f"floor (reals vs reals): {floor:.3g}")
    ax.set_xlabel("kimg (thousands of real images shown to D)")
    ax.set_ylabel(metric)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def curves_figure(rows: list[dict]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 2, figsize=(10, 8), dpi=100, layout="constrained")
    for ax, (title, keys) in zip(axes.flat, PANELS, strict=True):
        for key in keys:
            series = [(r["kimg"], r[key]) for r in rows if r.get(key) is not None]
            if series:
                ax.plot([s[0] for s in series], [s[1] for s in series], label=key, linewidth=1.2)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("kimg")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="training run folder, or a metric .jsonl file whose lines carry kimg")
    parser.add_argument("out", type=Path, help="folder for fid.png, curves.png and the grids")
    parser.add_argument("--metric", default="fid1k", help="the metric plotted against kimg (default: fid1k)")
    parser.add_argument("--floor", type=float, help="the metric between two sets of reals, drawn as a line")
    args = parser.parse_args()
    try:
        import matplotlib
    except ImportError:
        parser.error("matplotlib is needed: pip install matplotlib (it is in the dev extra)")
    matplotlib.use("Agg")
    single = args.run.is_file()  # a metric file: the FID curve only
    stats = args.run / "stats.jsonl"
    rows = read_jsonl(stats) if stats.is_file() else []
    if not rows and not single:
        parser.error(f"{stats} has no ticks yet")
    points = metric_points(args.run, args.metric)
    if single and not points:
        parser.error(f"{args.run} has no {args.metric} results with a kimg")
    args.out.mkdir(parents=True, exist_ok=True)
    if points:
        fid_figure(points, args.metric, args.floor).savefig(args.out / "fid.png")
        print(f"wrote {args.out / 'fid.png'}: " + ", ".join(f"{v:.1f} at {k:g} kimg" for k, v in points))
    else:
        print(f"no {args.metric} results in {args.run} (measure snapshots with cgsgan metrics --out {args.run})")
    if single:
        return
    curves_figure(rows).savefig(args.out / "curves.png")
    grids = sorted(args.run.glob("fakes-*.png"))
    copies = {"reals.png": args.run / "reals.png"}
    if grids:
        copies.update({"fakes-first.png": grids[0], "fakes-last.png": grids[-1]})
    for name, src in copies.items():
        if src.is_file():
            shutil.copyfile(src, args.out / name)
    print(f"wrote {args.out / 'curves.png'} ({len(rows)} ticks, {rows[-1]['kimg']:.3f} kimg)"
          + (f" and the grids {grids[0].name}, {grids[-1].name}" if grids else ""))  # fmt: skip


if __name__ == "__main__":
    main()
