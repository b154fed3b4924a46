"""From raw photos to a training dataset, as the paper's FFHQC pipeline: find the face, fit the camera,
crop the whole head, mask the background, score and filter, rebalance.

    prepare_dataset("photos/", "data/mine", resolutions=(512,))

writes, in the layout the loader reads (FFHQC's):

    OUT/512/00000.png ...        the crops of accepted photos (one folder per resolution)
    OUT/mask/00000.png ...       grayscale masks at the largest resolution, one set for all
    OUT/dataset.json             camera labels of the accepted crops (written last, atomically)
    OUT/attributes.csv           every processed photo: its number, scores, accepted or why not
    OUT/distribution.json        the rebalanced distribution (extreme poses and frontal non-smiling
                                 faces repeated; :mod:`cgsgan.data.rebalance`)
    OUT/report.jsonl             one line per photo as it finishes: its scores, or why it was skipped
    OUT/rejected/...             crops and masks of photos the thresholds or the filter turned down

Every photo is processed once (in worker processes); a re-run skips photos the
report already has, unless they changed, so an interrupted run resumes and new
photos can be added later. Filtering and rebalancing run on the report at the
end of every run, so new thresholds need no reprocessing: crops move between
the dataset and ``rejected/``.

Per photo: YuNet finds the faces (:mod:`cgsgan.prepare.models`); a photo with
none, or with a second face at least ``comparable`` times the size of the
largest, is skipped. The largest face's landmarks are found again on a
face-sized crop, averaged with those of the mirrored crop, and fitted
(:mod:`cgsgan.prepare.pose`); the fit gives the label and the crop, which is
cut with reflection padding where the photo ends. U^2-Net-p mattes the crop;
the mask is zero over the padding.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from cgsgan.atomic import atomic_write
from cgsgan.data.rebalance import Attributes, Rebalancing, rebalance
from cgsgan.prepare.models import Face, FaceDetector, Matting, require
from cgsgan.prepare.photos import Photos, decode_photo
from cgsgan.prepare.pose import EYE_WIDTH, HeadFit, check_eye_width, fit_head, mirror_landmarks

__all__ = ["Thresholds", "PhotoResult", "PreparedDataset", "prepare_photo", "prepare_dataset", "load_filter"]

REPORT = "report.jsonl"
DEFAULT_RULES = Rebalancing()
MASK_DIR = "mask"
REJECTED = "rejected"
DETECT_SIDE = 1024  # photos are searched for faces at most this large
REFINE_SIDE = 320  # landmarks are found again on a crop of this size around the face
REFINE_SPANS = (2.0, 2.5, 3.2)  # refinement crops span this many face boxes
FACE_PER_SPREAD = 4.2  # a face box's side per RMS distance of the landmarks from their centre (frontal)
ROLL_SEARCH = ((-10.0, 0.0, 10.0), (-4.0, 0.0, 4.0))  # crop turns tried around the estimate, degrees
SHARPNESS_SIDE = 256  # sharpness is measured at this size, so that it compares across resolutions

UserFilter = Callable[[np.ndarray, dict], "bool | str | None"]


@dataclass(frozen=True)
class Thresholds:
    """What a photo needs to be accepted (scores as in ``attributes.csv``)."""

    min_score: float = 0.8  # detection confidence
    max_upscale: float = 4.0  # crop pixels per photo pixel at the largest resolution
    min_sharpness: float = 0.0  # variance of the Laplacian of the crop at 256^2 (gray levels^2); 0: any
    max_yaw: float = 90.0  # degrees from frontal
    max_pitch: float = 45.0
    max_error: float = 0.15  # mean landmark error of the fit, as a fraction of the eye distance
    max_padding: float = 0.4  # fraction of the crop outside the photo (reflected)

    def reasons(self, s: dict) -> list[str]:
        """Why a photo with scores ``s`` is rejected (empty: accepted)."""
        checks = [
            (s["score"] >= self.min_score, f"detection score {s['score']:.2f} < {self.min_score}"),
            (s["upscale"] <= self.max_upscale, f"upscaled {s['upscale']:.1f}x > {self.max_upscale}"),
            (s["sharpness"] >= self.min_sharpness, f"sharpness {s['sharpness']:.0f} < {self.min_sharpness}"),
            (abs(s["yaw_deg"]) <= self.max_yaw, f"|yaw| {abs(s['yaw_deg']):.0f} > {self.max_yaw}"),
            (abs(s["pitch_deg"]) <= self.max_pitch, f"|pitch| {abs(s['pitch_deg']):.0f} > {self.max_pitch}"),
            (s["fit_error"] <= self.max_error, f"landmark fit error {s['fit_error']:.3f} > {self.max_error}"),
            (s["padding"] <= self.max_padding, f"padding {s['padding']:.2f} > {self.max_padding}"),
        ]
        return [why for ok, why in checks if not ok]


@dataclass
class PhotoResult:
    """One photo's outcome: the landmarks [5, 2] the fit used, the fit and scores, the crops by resolution and
    the mask; or why it was skipped."""

    reason: str | None = None
    landmarks: np.ndarray | None = None
    fit: HeadFit | None = None
    scores: dict = field(default_factory=dict)
    crops: dict[int, np.ndarray] = field(default_factory=dict)
    mask: np.ndarray | None = None


@dataclass(frozen=True)
class PreparedDataset:
    """What a run produced: counts, where, and how fast."""

    out: Path
    photos: int
    processed: int  # in this run
    accepted: int
    rejected: int  # by thresholds or the filter
    skipped: int  # no usable face, or unreadable
    distribution: int  # entries of distribution.json
    seconds: float

    def summary(self) -> str:
        rate = self.processed / self.seconds if self.seconds > 0 and self.processed else 0.0
        return (f"{self.photos} photos: {self.accepted} accepted, {self.rejected} rejected, {self.skipped} skipped "
                f"({self.processed} processed in this run, {rate:.2f} photos/s); "
                f"distribution of {self.distribution} entries; in {self.out}")  # fmt: skip


# ------------------------------------------------------------------ one photo
def _resized(image: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """The image with its longer side at most ``side``, and the factor applied."""
    import cv2

    h, w = image.shape[:2]
    k = min(1.0, side / max(h, w))
    if k == 1.0:
        return image, 1.0
    return cv2.resize(image, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA), k


def _nearest(faces: list[Face], point: np.ndarray) -> Face | None:
    return min(faces, key=lambda f: np.linalg.norm(f.box[:2] + f.box[2:] / 2 - point)) if faces else None


def _symmetric_landmarks(detect: FaceDetector, image: np.ndarray, face: Face) -> np.ndarray:
    """The face's landmarks averaged with those found in the mirrored image (mirrored back)."""
    w = image.shape[1]
    centre = face.box[:2] + face.box[2:] / 2
    mirrored = _nearest(detect(image[:, ::-1]), np.array([w - 1 - centre[0], centre[1]]))
    if mirrored is None:
        return face.landmarks
    return (face.landmarks + mirror_landmarks(mirrored.landmarks, w)) / 2


def _eye_angle(landmarks: np.ndarray) -> float:
    eyes = landmarks[1] - landmarks[0]
    return float(np.degrees(np.arctan2(eyes[1], eyes[0])))


def _landmarks_at(detect: FaceDetector, image: np.ndarray, centre: np.ndarray, angle: float,
                  scale: float) -> tuple[np.ndarray, float] | None:  # fmt: skip
    """The face's (mirror-averaged) landmarks in a REFINE_SIDE^2 crop turned by ``angle`` degrees and scaled
    by ``scale`` about ``centre``: mapped back to the photo, and the eye line's angle in the crop."""
    import cv2

    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
    matrix[:, 2] += (REFINE_SIDE - 1) / 2 - centre  # the face's centre to the crop's centre
    flags = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    crop = cv2.warpAffine(image, matrix, (REFINE_SIDE, REFINE_SIDE), flags=flags, borderMode=cv2.BORDER_REFLECT_101)
    face = _nearest(detect(crop), np.full(2, (REFINE_SIDE - 1) / 2))
    if face is None:
        return None
    landmarks = _symmetric_landmarks(detect, crop, face)
    return np.c_[landmarks, np.ones(5)] @ cv2.invertAffineTransform(matrix).T, _eye_angle(landmarks)


def _refined_landmarks(detect: FaceDetector, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Landmarks found again on upright REFINE_SIDE^2 crops around the face.

    The detector's landmarks lean toward upright (turning a crop by 10 degrees turns the eye line it reads
    by about 4), so the crop's turn is found where a line fitted to the readings at a few turns crosses
    level (twice, the second time closer); then crops at REFINE_SPANS are averaged (single detections move
    by a few pixels with the scale). Crops are placed, sized and turned from the landmarks, which mirror
    with the photo, so the result does too. A large face is cut from the photo shrunk to twice the crops'
    scale first (warpAffine does not average)."""
    spread = float(np.sqrt(((landmarks - landmarks.mean(0)) ** 2).sum(1).mean()))
    scale = REFINE_SIDE / (REFINE_SPANS[1] * FACE_PER_SPREAD * spread)
    image, shrink = _resized(image, round(max(image.shape[:2]) * scale * 2)) if scale < 0.5 else (image, 1.0)
    landmarks, scale = landmarks * shrink, scale / shrink
    centre = landmarks.mean(0)
    angle = _eye_angle(landmarks)
    for offsets in ROLL_SEARCH:  # the eye line's reading against the crop's turn is near linear but noisy
        tries = [(angle + o, f[1]) for o in offsets if (f := _landmarks_at(detect, image, centre, angle + o, scale))]
        if len(tries) < 2:
            break
        turns, readings = np.array(tries).T
        slope, intercept = np.polyfit(turns, readings, 1)
        if slope > -0.1:  # no usable trend: keep the turn
            break
        angle = float(np.clip(-intercept / slope, angle - 30, angle + 30))
    found = [f[0] for span in REFINE_SPANS
             if (f := _landmarks_at(detect, image, centre, angle, scale * REFINE_SPANS[1] / span))]  # fmt: skip
    return (np.mean(found, axis=0) if found else landmarks) / shrink


def _warp(image: np.ndarray, fit: HeadFit, resolution: int, border: int) -> np.ndarray:
    """The crop of ``image`` at ``resolution``, area-averaged first where the crop shrinks the photo."""
    import cv2

    matrix = fit.crop_matrix(resolution)
    shrink = fit.size / resolution
    if shrink > 1.5:
        small = cv2.resize(image, None, fx=1.2 / shrink, fy=1.2 / shrink, interpolation=cv2.INTER_AREA)
        scale = np.diag([image.shape[1] / small.shape[1], image.shape[0] / small.shape[0]])
        matrix = np.c_[matrix[:, :2] @ scale, matrix[:, 2]]
        image = small
    flags = cv2.INTER_CUBIC if shrink < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(image, matrix, (resolution, resolution), flags=flags, borderMode=border)


def _sharpness(crop: np.ndarray) -> float:
    import cv2

    gray = cv2.cvtColor(cv2.resize(crop, (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=cv2.INTER_AREA),
                        cv2.COLOR_RGB2GRAY)  # fmt: skip
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def prepare_photo(
    image: np.ndarray,
    detect: FaceDetector,
    matting: Matting | None,
    resolutions: Sequence[int] = (512,),
    comparable: float = 0.6,
    eye_width: float = EYE_WIDTH,
) -> PhotoResult:
    """Find, fit, crop, mask and score one RGB photo [H, W, 3] uint8; ``reason`` says why it was skipped."""
    import cv2

    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 16:
        return PhotoResult(reason=f"not a usable RGB photo (shape {tuple(image.shape)})")
    small, k = _resized(image, DETECT_SIDE)
    faces = detect(small)
    if not faces:
        return PhotoResult(reason="no face found")
    others = [f for f in faces[1:] if f.size >= comparable * faces[0].size]
    if others:
        return PhotoResult(reason=f"{len(others) + 1} faces of comparable size")
    face = faces[0]
    landmarks = _symmetric_landmarks(detect, small, face) / k
    landmarks = _refined_landmarks(detect, image, landmarks)
    fit = fit_head(landmarks, eye_width)
    top = max(resolutions)
    crops = {r: _warp(image, fit, r, cv2.BORDER_REFLECT_101) for r in sorted(resolutions)}
    inside = _warp(np.full(image.shape[:2], 255, np.uint8), fit, top, cv2.BORDER_CONSTANT).astype(np.float32) / 255
    mask = None
    if matting is not None:
        mask = np.round(matting(crops[top]) * inside * 255).astype(np.uint8)
    scores = {
        "score": round(face.score, 4),
        "face_px": round(face.size / k, 1),
        "upscale": round(top / fit.size, 3),
        "sharpness": round(_sharpness(crops[top]), 1),
        "yaw_deg": round(fit.yaw_deg, 2),
        "pitch_deg": round(fit.pitch_deg, 2),
        "roll_deg": round(fit.roll_deg, 2),
        "smile": round(fit.smile, 3),
        "fit_error": round(fit.error, 4),
        "padding": round(1 - float(inside.mean()), 3),
        "foreground": round(float(mask.mean()) / 255, 3) if mask is not None else None,
        "faces": len(faces),
    }
    return PhotoResult(landmarks=landmarks, fit=fit, scores=scores, crops=crops, mask=mask)


# ------------------------------------------------------------------ workers
_WORKER: dict = {}  # this worker process's networks, made once by _init_worker


def _init_worker(photos: Photos, mask: bool) -> None:
    _WORKER["photos"] = photos  # once per worker, not once per job (a folder's name list can be long)
    _WORKER["detect"] = FaceDetector()
    _WORKER["matting"] = Matting() if mask else None


def _png(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=6)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


@dataclass(frozen=True)
class _Job:
    """One photo to process, and the settings its outputs depend on."""

    name: str
    number: int
    stamp: str
    out: Path
    settings: dict  # resolutions, eye_width, mask


def _settings(resolutions: tuple[int, ...], eye_width: float, mask: bool) -> dict:
    return {"resolutions": list(resolutions), "eye_width": eye_width, "mask": mask}


def _work(job: _Job) -> dict:
    """Process one photo in a worker; the report line (the crops and mask are written here)."""
    name, number, out, settings = job.name, job.number, job.out, job.settings
    record = {"photo": name, "stamp": job.stamp, "number": number, "settings": settings}
    start = time.perf_counter()
    try:
        image = decode_photo(_WORKER["photos"].read(name))
        result = prepare_photo(image, _WORKER["detect"], _WORKER["matting"], settings["resolutions"],
                               eye_width=settings["eye_width"])  # fmt: skip
    except ValueError as e:
        return {**record, "status": "skipped", "reason": str(e)}
    except Exception as e:  # one odd photo must not stop the run; the report keeps the reason
        return {**record, "status": "skipped", "reason": f"{type(e).__name__}: {e}"}
    if result.reason:
        return {**record, "status": "skipped", "reason": result.reason}
    file = f"{number:05d}.png"
    for resolution, crop in result.crops.items():
        _png(out / str(resolution) / file, crop)
    if result.mask is not None:
        _png(out / MASK_DIR / file, result.mask)
    label = [round(float(v), 7) for v in result.fit.label()]
    seconds = round(time.perf_counter() - start, 3)
    return {**record, "status": "ok", "file": file, "label": label, "scores": result.scores, "seconds": seconds}


# ------------------------------------------------------------------ the run
def _read_report(path: Path) -> dict[str, dict]:
    """The newest line per photo of a report (a torn last line from an interrupted run is ignored)."""
    records = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "photo" in record:
                records[record["photo"]] = record
    return records


def _covers(old: dict, new: dict) -> bool:
    """Whether a photo processed with settings ``old`` needs no processing for ``new``."""
    return (set(new["resolutions"]) <= set(old.get("resolutions", ())) and old.get("eye_width") == new["eye_width"]
            and (old.get("mask") or not new["mask"]))  # fmt: skip


def _check_resolutions(resolutions: Iterable[int]) -> tuple[int, ...]:
    out = tuple(sorted(set(int(r) for r in resolutions)))
    if not out or any(r < 16 or r & (r - 1) for r in out):
        raise ValueError(f"resolutions must be powers of two >= 16, got {list(resolutions)}")
    return out


def load_filter(spec: str) -> UserFilter:
    """``module:function`` -> the function: called as ``function(crop [H, W, 3] uint8, scores dict)``, it
    returns True or None to keep the photo, False or a reason (str) to reject it."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"filter must be module:function, got {spec!r}")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load filter {spec!r}: {e}") from None
    if not callable(fn):
        raise ValueError(f"filter {spec!r} is not callable")
    return fn


def _move(src: Path, dst: Path) -> None:
    if src.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)


def _place(out: Path, file: str, folders: Sequence[str], accepted: bool) -> None:
    """Move a crop's files (each resolution and the mask) into the dataset or into rejected/."""
    for folder in folders:
        inside, aside = out / folder / file, out / REJECTED / folder / file
        _move(aside, inside) if accepted else _move(inside, aside)


def _remove_orphans(out: Path, folders: Sequence[str], known: set[str]) -> None:
    """Delete crops and masks no report line accounts for: those of photos in flight when a run was
    stopped (they are made again when the run resumes)."""
    for folder in folders:
        for where in (out / folder, out / REJECTED / folder):
            if where.is_dir():
                for path in where.glob("*.png"):
                    if path.name not in known:
                        path.unlink()


def _finish(out: Path, records: dict[str, dict], resolutions: Sequence[int], thresholds: Thresholds,
            user_filter: UserFilter | None, rules: Rebalancing | None) -> tuple[int, int, int]:  # fmt: skip
    """Filter, move, and write attributes.csv, distribution.json and (last) dataset.json."""
    folders = [*(str(r) for r in resolutions), MASK_DIR]
    _remove_orphans(out, folders, {r["file"] for r in records.values() if r["status"] == "ok"})
    rows, labels, attributes = [], [], []
    for record in sorted(records.values(), key=lambda r: r["number"]):
        if record["status"] != "ok":
            continue
        file, scores = record["file"], record["scores"]
        reasons = thresholds.reasons(scores)
        if not reasons and user_filter is not None:
            where = out / str(min(resolutions)) / file
            crop = np.asarray(Image.open(where).convert("RGB"))
            verdict = user_filter(crop, dict(scores))
            if verdict is False or isinstance(verdict, str):
                reasons.append(f"filter: {verdict}" if isinstance(verdict, str) else "filter")
        accepted = not reasons
        _place(out, file, folders, accepted)
        rows.append({"file": file, "number": record["number"], "photo": record["photo"],
                     "accepted": int(accepted), "reasons": "; ".join(reasons), **scores})  # fmt: skip
        if accepted:
            labels.append([file, record["label"]])
            attributes.append(Attributes(record["number"], scores["yaw_deg"], scores["pitch_deg"], scores["smile"]))
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write(out / "attributes.csv", lambda f: f.write(buffer.getvalue().encode()))
    distribution = rebalance(attributes, rules) if rules is not None else sorted(a.number for a in attributes)
    atomic_write(out / "distribution.json", lambda f: f.write(json.dumps(distribution).encode()))
    atomic_write(out / "dataset.json", lambda f: f.write(json.dumps({"labels": labels}, indent=1).encode()))
    return len(labels), len(rows) - len(labels), len(distribution)


def prepare_dataset(
    photos: str | os.PathLike | Photos,
    out: str | os.PathLike,
    resolutions: Sequence[int] = (512,),
    workers: int | None = None,
    thresholds: Thresholds = Thresholds(),
    user_filter: UserFilter | str | None = None,
    rebalancing: Rebalancing | None = DEFAULT_RULES,
    mask: bool = True,
    eye_width: float = EYE_WIDTH,
    progress: bool = True,
) -> PreparedDataset:
    """Prepare a dataset from photos (a folder, a zip or a list file) into ``out``; resumable (module docstring).

    ``workers``: processes (default: the CPU count; 0 runs in this process).
    ``user_filter``: a function or ``"module:function"`` (:func:`load_filter`).
    ``rebalancing``: the rules of distribution.json; None lists every accepted image once.
    ``eye_width``: the framing, the eye distance as a fraction of the crop width (:mod:`.pose`).
    A photo is processed again when it changed, or when the resolutions, framing or masking it needs differ.
    """
    require("cv2", "onnxruntime")
    start = time.perf_counter()
    photos = photos if isinstance(photos, Photos) else Photos(photos)
    resolutions = _check_resolutions(resolutions)
    check_eye_width(eye_width)
    user_filter = load_filter(user_filter) if isinstance(user_filter, str) else user_filter
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    report = out / REPORT
    records = _read_report(report)
    settings = _settings(resolutions, eye_width, mask)
    names = photos.names()
    stamps = {name: photos.stamp(name) for name in names}
    done = {name for name, r in records.items() if name in stamps and r.get("stamp") == stamps[name]
            and _covers(r.get("settings", {}), settings)}  # fmt: skip
    next_number = max((r["number"] for r in records.values()), default=-1) + 1
    jobs = []
    for name in names:
        if name not in done:
            number = records[name]["number"] if name in records else next_number
            next_number += name not in records
            jobs.append(_Job(name, number, stamps[name], out, settings))

    workers = (os.cpu_count() or 1) if workers is None else workers
    workers = min(workers, len(jobs))
    bar = tqdm(total=len(jobs), desc="photos", unit="photo", disable=not progress or not jobs)
    with report.open("a") as log:
        if workers <= 1:
            if jobs:
                _init_worker(photos, mask)
            results: Iterable[dict] = map(_work, jobs)
            pool = None
        else:
            pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, (photos, mask))
            results = pool.imap_unordered(_work, jobs)
        try:
            for record in results:
                records[record["photo"]] = record
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.update()
                if record["status"] != "ok":
                    bar.write(f"skipped {record['photo']}: {record['reason']}")
        except KeyboardInterrupt:  # what finished stays usable: write the dataset files for it, then stop
            bar.close()
            if pool is not None:
                pool.terminate()
                pool.join()
            _finish(out, records, resolutions, thresholds, user_filter, rebalancing)
            raise
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
                pool.join()

    accepted, rejected, entries = _finish(out, records, resolutions, thresholds, user_filter, rebalancing)
    skipped = sum(r["status"] != "ok" for r in records.values())
    return PreparedDataset(out, len(photos), len(jobs), accepted, rejected, skipped, entries,
                           time.perf_counter() - start)  # fmt: skip
