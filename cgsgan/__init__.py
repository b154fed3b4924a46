"""cgsgan: 3D-consistent Gaussian-splatting GANs of human heads (CGS-GAN)."""

from cgsgan.gaussians import GaussianScene

__version__ = "0.1.0"
__all__ = ["GaussianScene", "__version__"]
