"""The generator's inference path: ws -> scene without gradients, optionally compiled or in half precision.

    synthesize = Synthesizer(G, precision="float32", compile=True)
    scene = synthesize(ws)  # GaussianScene, float32, one head per row of ws [B, num_ws, w_dim]

Every app that makes heads (generate, video, the viewer, the metrics) goes
through one of these, so a faster path reaches all of them at once.

- ``precision``: "bfloat16" or "float16" run the network under ``torch.autocast``;
  the scene comes back in float32. Faster on GPUs with fast half matmuls, slower
  on CPUs without bf16 units (README, Synthesis, has the image error).
- ``compile``: ``torch.compile`` with static shapes. The first call compiles for
  its batch size (a minute or more on a CPU, seconds once torch's on-disk cache
  is warm); later calls of any size run in chunks of that size, the last one
  padded, so nothing compiles again. On CUDA the compiled network is captured
  as a CUDA graph ("reduce-overhead"): at batch 1 the eager generator is bound
  by launching about a thousand small kernels, which one graph replay removes.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from cgsgan.gaussians import GaussianScene
from cgsgan.models.generator import CGSGenerator

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def precision_context(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """torch.autocast for "bfloat16" / "float16" on ``device``, nothing for "float32"; ValueError otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()


def compile_mode(device: torch.device | str) -> str:
    """torch.compile's mode for a generator on ``device``: CUDA graphs on CUDA, the default elsewhere."""
    return "reduce-overhead" if torch.device(device).type == "cuda" else "default"


class Synthesizer:
    """ws [B, num_ws, w_dim] -> G's scene in float32, without gradients (see the module docstring)."""

    def __init__(self, G: CGSGenerator, precision: str = "float32", compile: bool = False,
                 batch: int | None = None) -> None:  # fmt: skip
        """``batch``: the one batch size a compiled synthesizer runs (None: the first call's)."""
        precision_context("cpu", precision)  # checks the name before anything runs
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise ValueError(f"batch must be a positive integer or None, got {batch!r}")
        self.G, self.precision, self.compiled, self.batch = G, precision, bool(compile), batch
        self.mode = compile_mode(next(G.parameters()).device) if compile else None
        self._compiled = torch.compile(G.synthesis, dynamic=False, mode=self.mode) if compile else None

    def __call__(self, ws: Tensor) -> GaussianScene:
        if not self.compiled:
            with torch.no_grad(), precision_context(ws.device, self.precision):
                return self.G.synthesis(ws)[0].to(torch.float32)
        if self.batch is None:
            self.batch = len(ws)
        scenes = []
        for chunk in ws.split(self.batch):
            real = len(chunk)
            if real < self.batch:  # one static shape: pad with copies of the last row, keep the real rows
                chunk = torch.cat([chunk, chunk[-1:].expand(self.batch - real, *chunk.shape[1:])])
            scenes.append(self._static(chunk)[:real])
        return scenes[0] if len(scenes) == 1 else GaussianScene.cat(scenes)

    def _static(self, ws: Tensor) -> GaussianScene:
        graphs = self.mode == "reduce-overhead"
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.no_grad(), precision_context(ws.device, self.precision):
            scene = self._compiled(ws)[0]
        # A CUDA graph's outputs live in memory that its next replay overwrites: copy them out.
        return scene.map(lambda t: t.to(torch.float32, copy=graphs))
