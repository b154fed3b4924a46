"""Synthetic heads: parametric human heads made of 3D Gaussians, and datasets rendered from them.

    from cgsgan.synthetic import sample_head_params, build_head, synthesize_dataset, demo_head

    scene = build_head(sample_head_params(seed=7), count=20000)   # GaussianScene, B = 1
    synthesize_dataset("out/synth64", count=5000, resolution=64)  # an FFHQC-style dataset folder
    scene = demo_head(seed=0)                                     # the demo preset

- :mod:`~cgsgan.synthetic.params`: what a head is (:class:`HeadParams`) and random heads from seeds;
- :mod:`~cgsgan.synthetic.palette`: the one palette of skin, hair, iris, clothes and frame colours;
- :mod:`~cgsgan.synthetic.builder`: params -> Gaussians (``build_head``, ``HeadBuilder``), framed like FFHQC;
- :mod:`~cgsgan.synthetic.dataset`: heads rendered from FFHQ-like cameras into a dataset folder;
- :mod:`~cgsgan.synthetic.demo`: the demo head, one preset of the family.

Nothing here is imported by ``cgsgan.data``: only what uses the heads loads them.
"""

from cgsgan.synthetic.builder import HEAD_SCALE, HeadBuilder, build_head
from cgsgan.synthetic.dataset import SYNTH_VERSION, synthesize_dataset
from cgsgan.synthetic.demo import demo_head, demo_params
from cgsgan.synthetic.params import HAIR_STYLES, HeadParams, sample_head_params

__all__ = [
    "HAIR_STYLES",
    "HEAD_SCALE",
    "SYNTH_VERSION",
    "HeadBuilder",
    "HeadParams",
    "build_head",
    "demo_head",
    "demo_params",
    "sample_head_params",
    "synthesize_dataset",
]
