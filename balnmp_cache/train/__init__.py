"""Stage 2: bags, the trainer, run directories, ablation grids and ``predict``.

``run_train(TrainConfig)`` trains one attention-MIL head on a feature cache and writes a run
directory; ``run_ablation(AblationGrid)`` trains every configuration of a grid in one process, sharing
the loaded features; ``run_predict(PredictConfig)`` applies a trained run to new slides.
Importing this package (or ``balnmp_cache.train.config``) imports nothing heavy — no torch, h5py,
zarr, pandas or matplotlib (tested): the training functions import them when called.
"""

from balnmp_cache.train.ablate import AblationGrid as AblationGrid
from balnmp_cache.train.ablate import AblationResult as AblationResult
from balnmp_cache.train.ablate import expand_grid as expand_grid
from balnmp_cache.train.ablate import run_ablation as run_ablation
from balnmp_cache.train.config import PredictConfig as PredictConfig
from balnmp_cache.train.config import TrainConfig as TrainConfig
from balnmp_cache.train.predict import PredictResult as PredictResult
from balnmp_cache.train.predict import PredictRow as PredictRow
from balnmp_cache.train.predict import run_predict as run_predict
from balnmp_cache.train.run import TrainResult as TrainResult
from balnmp_cache.train.run import run_train as run_train

__all__ = [
    "AblationGrid",
    "AblationResult",
    "PredictConfig",
    "PredictResult",
    "PredictRow",
    "TrainConfig",
    "TrainResult",
    "expand_grid",
    "run_ablation",
    "run_predict",
    "run_train",
]
