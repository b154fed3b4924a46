"""Ready-made tasks on top of the library, used by the ``cgsgan`` command line.

- :mod:`cgsgan.apps.heads`: seeds -> latents -> scenes (``generate``), networks by path or built in;
- :func:`generate_files`: a grid, a turntable and each head as PLY / .splat / .spz / .npz;
- :func:`make_video`: MP4 / GIF orbits, sweeps and latent interpolations;
- :mod:`cgsgan.apps.viewer`: the web viewer (viser, an extra);
- :mod:`cgsgan.apps.mesh`: a coloured triangle mesh of a head (trimesh and scikit-image, an extra);
- :func:`describe`: what a network, scene file, run or dataset is;
- :func:`render_file` / :func:`convert_file`: render a scene file, convert between scene formats;
- :func:`run_demo`: the procedural demo head (no network needed).
"""

from cgsgan.apps.demo import run_demo
from cgsgan.apps.files import convert_file, read_scene, render_file, write_scene
from cgsgan.apps.generate import generate_files
from cgsgan.apps.heads import generate, open_network, parse_seeds
from cgsgan.apps.info import describe
from cgsgan.apps.video import make_video

__all__ = [
    "convert_file",
    "describe",
    "generate",
    "generate_files",
    "make_video",
    "open_network",
    "parse_seeds",
    "read_scene",
    "render_file",
    "run_demo",
    "write_scene",
]
