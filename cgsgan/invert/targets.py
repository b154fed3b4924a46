"""What an inversion fits: views of one head, each an image, a mask and a camera label.

A raw photo goes through photo preparation (:mod:`cgsgan.prepare`: face, camera,
whole-head crop, mask), at the network's resolution and framing. An image that
is already a crop in the datasets' framing comes with its label (25 numbers, or
a ``dataset.json`` holding an entry for its file name) and optionally a mask.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from cgsgan.camera import check_labels

__all__ = ["View", "aligned_view", "face_landmarks", "photo_views", "parse_label"]


@dataclass
class View:
    """One view of the head: image [3, R, R] and mask [1, R, R] in [0, 1], camera label [25], its source, and
    the five face landmarks [5, 2] in its pixels (for the identity loss)."""

    image: Tensor
    mask: Tensor
    label: Tensor
    source: str
    scores: dict | None = None  # photo preparation's scores, for a raw photo
    landmarks: Tensor | None = None


def face_landmarks(label: Tensor, resolution: int, eye_width: float | None = None) -> Tensor:
    """Where the mean face of photo preparation appears in a crop seen with ``label`` [25]: [5, 2] pixels."""
    from cgsgan.camera import labels_to_matrices, world_to_camera
    from cgsgan.prepare.pose import EYE_WIDTH, mean_face_world

    points = torch.from_numpy(mean_face_world(eye_width=eye_width or EYE_WIDTH))
    w2c = world_to_camera(label[None].double())[0]
    _, k = labels_to_matrices(label[None].double())
    uv = (points @ w2c[:3, :3].T + w2c[:3, 3]) @ k[0].T
    return (uv[:, :2] / uv[:, 2:] * resolution - 0.5).float()


def _to_tensor(array: np.ndarray) -> Tensor:
    t = torch.from_numpy(np.array(array, dtype=np.float32)) / 255
    return t.permute(2, 0, 1) if t.dim() == 3 else t.unsqueeze(0)


def parse_label(text: str, image: str | os.PathLike) -> Tensor:
    """A label [25] from 25 numbers (commas or spaces), or from a dataset.json entry for ``image``'s file name."""
    path = Path(text)
    if path.suffix == ".json" or (len(text) < 1000 and not any(c.isspace() or c == "," for c in text)):
        try:
            labels = dict(json.loads(path.read_text())["labels"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a dataset.json with labels: {e}") from None
        name = Path(image).name
        values = labels.get(name, labels.get(Path(name).stem + ".png"))
        if values is None:
            raise ValueError(f"{path} has no label for {name}")
    else:
        try:
            values = [float(v) for v in text.replace(",", " ").split()]
        except ValueError:
            raise ValueError(f"a label is 25 numbers or a dataset.json; got {text!r}") from None
    label = torch.tensor(values, dtype=torch.float32)
    if label.shape != (25,):
        raise ValueError(f"a label has 25 numbers, got {label.numel()}")
    return check_labels(label[None], "label")[0]


def aligned_view(
    image: str | os.PathLike,
    label: Tensor,
    resolution: int,
    mask: str | os.PathLike | None = None,
    eye_width: float | None = None,
) -> View:
    """An already aligned crop: resized to ``resolution``; without a mask the whole image is the head. Its
    landmarks are the mean face's seen with the label (``eye_width``: the crop's framing)."""
    with Image.open(image) as im:
        rgb = np.asarray(im.convert("RGB").resize((resolution, resolution), Image.LANCZOS))
    if mask is None:
        alpha = np.full((resolution, resolution), 255, np.uint8)
    else:
        with Image.open(mask) as m:
            alpha = np.asarray(m.convert("L").resize((resolution, resolution), Image.BILINEAR))
    label = label.float()
    landmarks = face_landmarks(label, resolution, eye_width)
    return View(_to_tensor(rgb), _to_tensor(alpha), label, str(image), None, landmarks)


def photo_views(photos: list[str | os.PathLike], resolution: int, eye_width: float | None = None) -> list[View]:
    """Raw photos prepared at ``resolution``: one view each; a photo without a usable face raises ValueError."""
    from cgsgan.prepare import FaceDetector, Matting, decode_photo, prepare_photo
    from cgsgan.prepare.pose import EYE_WIDTH

    detect, matting = FaceDetector(), Matting()
    views = []
    for photo in photos:
        try:
            image = decode_photo(Path(photo).read_bytes())
        except OSError as e:
            raise ValueError(f"{photo}: {e}") from None
        result = prepare_photo(image, detect, matting, (resolution,), eye_width=eye_width or EYE_WIDTH)
        if result.reason:
            raise ValueError(f"{photo}: {result.reason}")
        in_crop = np.c_[result.landmarks, np.ones(5)] @ result.fit.crop_matrix(resolution).T
        views.append(View(_to_tensor(result.crops[resolution]), _to_tensor(result.mask), result.fit.label(),
                          str(photo), result.scores, torch.from_numpy(in_crop).float()))  # fmt: skip
    return views
