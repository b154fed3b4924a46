"""Metrics at training snapshots: the run's ``metrics`` on G_ema, with the same code as ``cgsgan metrics``.

At every snapshot each process of the run evaluates its share of the fakes (the
reals' features are extracted once, at the first snapshot, or read from the
cache). Rank 0 appends the results to ``RUN/metric-<name>.jsonl`` (one line per
snapshot, naming it), puts the values into that tick's line of stats.jsonl (and
TensorBoard), and keeps ``RUN/best-snapshot.json`` pointing at the snapshot with
the lowest value of the first metric that has one value (FID, KID or FID3D).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cgsgan.atomic import atomic_write

BEST_FILE = "best-snapshot.json"


class SnapshotMetrics:
    """Called with the snapshot just written (None on ranks that do not write); returns {result key: value}."""

    def __init__(self, trainer, data_path: str | os.PathLike, run_dir: str | os.PathLike,
                 inception: str | os.PathLike | None = None, log=None) -> None:  # fmt: skip
        from cgsgan.metrics import Evaluator

        cfg = trainer.cfg
        self.trainer, self.run_dir, self.log = trainer, Path(run_dir), log
        self.evaluator = Evaluator(
            data_path, list(cfg.metrics), trainer.g_cfg.resolution, distribution=cfg.distribution,
            inception=inception, device=trainer.device, batch=max(trainer.batch_gpu, 4), seed=cfg.seed,
            progress=log is not None,
        )  # fmt: skip
        ranked = [s.name for s in self.evaluator.specs if s.kind != "fidyaw"]
        self.ranked = ranked[0] if ranked else None

    def __call__(self, network: Path | None) -> dict[str, float]:
        from cgsgan.metrics import append_results

        results = self.evaluator(self.trainer.G_ema)
        values = {k: v for r in results for k, v in r["results"].items() if v is not None}
        if network is not None:
            kimg = self.trainer.counters.images / 1000
            if self.log is not None:
                self.log("  ".join(f"{k} {v:.4g}" for k, v in values.items()) + f"  ({network.name})")
            try:  # a failed write must not stop rank 0 alone (the others would wait for it in the next step)
                append_results(self.run_dir, results, snapshot=network.name, kimg=kimg)
                if self.ranked is not None and self.ranked in values:
                    self._keep_best(network, values[self.ranked], kimg)
            except OSError as e:
                if self.log is not None:
                    self.log(f"warning: metric results not written ({e})")
        return values

    def _keep_best(self, network: Path, value: float, kimg: float) -> None:
        path = self.run_dir / BEST_FILE
        try:
            best = json.loads(path.read_text())
        except (OSError, ValueError):
            best = None
        if best is not None and best.get("metric") == self.ranked and best.get("value", float("inf")) <= value:
            return
        record = {"metric": self.ranked, "value": value, "snapshot": network.name, "kimg": kimg}
        atomic_write(path, lambda f: f.write((json.dumps(record, indent=2) + "\n").encode()))
