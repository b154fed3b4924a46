"""Training: the config of a run (:mod:`.config`), one process's step (:mod:`.trainer`), snapshots
(:mod:`.snapshots`), progress (:mod:`.progress`), run folders and setup (:mod:`.runs`), the processes of a
run (:mod:`.processes`), and the loop (:mod:`.loop`)."""

from cgsgan.train.config import TrainConfig, TrainingError
from cgsgan.train.loop import train
from cgsgan.train.processes import Process
from cgsgan.train.runs import RunPlan, plan_run, prepare_run, training_data
from cgsgan.train.snapshots import Snapshot, find_snapshot, latest_snapshot, load_official_optimizers
from cgsgan.train.trainer import Trainer

__all__ = [
    "Process",
    "RunPlan",
    "Snapshot",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "find_snapshot",
    "latest_snapshot",
    "load_official_optimizers",
    "plan_run",
    "prepare_run",
    "train",
    "training_data",
]
