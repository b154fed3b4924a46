"""The README's picture of photo preparation: photo and crop square, crop, mask, and a head of the
built-in network rendered with the fitted camera label over the crop.

    python docs/prepare/figure.py        # writes docs/prepare/pipeline.png (about 10 s on a CPU)

The photos are scikit-image's astronaut (public domain): as it is, mirrored and
turned 15 degrees on a larger canvas, and small near the edge of a wide one
(where the crop needs reflection padding, which the mask leaves out). They are
prepared at the built-in network's framing (eyes 18.7 % of the width apart, as
its synthetic training heads), so that its head and the crop should line up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from skimage.data import astronaut

from cgsgan.io import load_network
from cgsgan.prepare import FaceDetector, Matting, prepare_photo
from cgsgan.render import render

SIDE = 192  # each panel
FRAMING = 0.187


def photos() -> list[np.ndarray]:
    face = Image.fromarray(astronaut())
    turned = Image.new("RGB", (900, 700), (90, 110, 140))
    turned.paste(face.transpose(Image.FLIP_LEFT_RIGHT).rotate(15, expand=True, fillcolor=(90, 110, 140)), (150, 40))
    edge = Image.new("RGB", (1200, 600), (200, 190, 170))
    edge.paste(face.resize((300, 300)), (-40, -60))  # the head runs off the photo
    return [np.asarray(face), np.asarray(turned), np.asarray(edge)]


def panel(image: np.ndarray | Image.Image) -> Image.Image:
    image = image if isinstance(image, Image.Image) else Image.fromarray(image)
    return image.convert("RGB").resize((SIDE, SIDE), Image.LANCZOS)


def photo_panel(photo: np.ndarray, fit) -> Image.Image:
    """The photo letterboxed into a square, with the crop's outline."""
    h, w = photo.shape[:2]
    k = SIDE / max(h, w)
    out = Image.new("RGB", (SIDE, SIDE), (255, 255, 255))
    out.paste(Image.fromarray(photo).resize((round(w * k), round(h * k)), Image.LANCZOS), (0, 0))
    corners = fit.crop_to_photo(np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]], float)) * k
    ImageDraw.Draw(out).line([tuple(p) for p in corners], fill=(255, 40, 40), width=2)
    return out


def main() -> None:
    detect, matting = FaceDetector(), Matting()
    G = load_network()
    z = torch.randn(1, G.cfg.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        scene, _ = G(z)
    rows = []
    for photo in photos():
        result = prepare_photo(photo, detect, matting, resolutions=(256,), eye_width=FRAMING)
        crop, fit = result.crops[256], result.fit
        with torch.no_grad():
            head = render(scene, fit.label()[None], SIDE, background=torch.ones(1, 3))
        alpha = head.alpha[0, 0].numpy()[..., None] * 0.6
        over = np.asarray(panel(crop)) * (1 - alpha) + head.image[0].permute(1, 2, 0).numpy() * 255 * alpha
        rows.append([photo_panel(photo, fit), panel(crop), panel(result.mask), panel(over.astype(np.uint8))])
        s = result.scores
        print(
            f"yaw {s['yaw_deg']:+.1f}  pitch {s['pitch_deg']:+.1f}  roll {s['roll_deg']:+.1f}  "
            f"smile {s['smile']:.2f}  padding {s['padding']:.2f}"
        )
    sheet = Image.new("RGB", (4 * SIDE + 3 * 4, len(rows) * SIDE + (len(rows) - 1) * 4), (255, 255, 255))
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            sheet.paste(image, (j * (SIDE + 4), i * (SIDE + 4)))
    out = Path(__file__).with_name("pipeline.png")
    sheet.save(out, optimize=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
