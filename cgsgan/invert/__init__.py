"""Inversion: photos of one head in, the latent (and a tuned generator) that renders it out.

    from cgsgan.invert import InversionConfig, invert, photo_views
    views = photo_views(["me.jpg"], resolution=G.cfg.resolution)     # needs the prepare extra
    result = invert(G, views, InversionConfig(steps=400, tune_steps=200))
    scene = result.scene()                                           # a GaussianScene: export, render, view

Modules: :mod:`.targets` (views from raw photos or aligned crops), :mod:`.perceptual`
(offline perceptual distances), :mod:`.optimize` (latent fit and pivotal tuning).
The files ``cgsgan invert`` writes come from :mod:`cgsgan.apps.invert`.
"""

from cgsgan.invert.optimize import Inversion, InversionConfig, invert, psnr
from cgsgan.invert.perceptual import InceptionDistance, LpipsVgg, load_perceptual
from cgsgan.invert.targets import View, aligned_view, parse_label, photo_views

__all__ = [
    "InceptionDistance",
    "Inversion",
    "InversionConfig",
    "LpipsVgg",
    "View",
    "aligned_view",
    "invert",
    "load_perceptual",
    "parse_label",
    "photo_views",
    "psnr",
]
