"""The networks: the CGS-GAN generator (and, later, the discriminator)."""

from cgsgan.models.generator import CGSGenerator, Hierarchy, build_generator

__all__ = ["CGSGenerator", "Hierarchy", "build_generator"]
