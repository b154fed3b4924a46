"""Built-in scenes that need no download: a procedural demo head.

See :func:`cgsgan.data.demo_scene.demo_head`.
"""

from cgsgan.data.demo_scene import demo_head

__all__ = ["demo_head"]
