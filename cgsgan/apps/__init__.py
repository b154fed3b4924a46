"""Ready-made tasks on top of the library, used by the ``cgsgan`` command line.

- :func:`run_demo`: build the procedural demo head, render a strip of views, export PLY/.splat;
- :func:`render_file`: render a .ply/.splat file to an image, a turntable folder or a video;
- :func:`convert_file`: convert between .ply and .splat (and full <-> compact PLY).
"""

from cgsgan.apps.demo import run_demo
from cgsgan.apps.files import convert_file, read_scene, render_file, write_scene

__all__ = ["convert_file", "read_scene", "render_file", "run_demo", "write_scene"]
