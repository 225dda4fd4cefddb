"""`python -m covid_tl.data.synthetic out.png`: a labelled grid of phantoms with their ground
truth outlined (lungs green, opacities yellow, marks red)."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import cv2
import numpy as np

from covid_tl.core.labels import POSITIVE
from covid_tl.data.synthetic.marks import ShortcutSpec
from covid_tl.data.synthetic.source import Phantom, SyntheticSource
from covid_tl.reporting.grid import grid, labelled


def outline(mask: np.ndarray) -> np.ndarray:
    """The one-pixel inner border of a mask."""
    m = mask.astype(np.uint8)
    return (m - cv2.erode(m, np.ones((3, 3), np.uint8))).astype(bool)


def preview_tile(ph: Phantom, index: int, scale: int = 2) -> np.ndarray:
    """BGR tile: the image, lungs outlined green, opacities yellow, marks red, and a title."""
    img = cv2.cvtColor(ph.image, cv2.COLOR_GRAY2BGR)
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)

    def up(mask: np.ndarray) -> np.ndarray:
        m = mask.astype(np.uint8)
        return cv2.resize(m, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) > 0

    img[outline(up(ph.lung_mask))] = (60, 200, 60)
    img[outline(up(ph.opacity_mask))] = (0, 215, 255)
    marks = up(ph.mark_mask)
    around = cv2.dilate(marks.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    img[outline(around) & ~marks] = (40, 40, 255)  # just outside, so the mark stays visible
    colour = (120, 120, 255) if ph.label == POSITIVE else (220, 220, 220)
    return labelled(img, [f"{index} {ph.label}{' marked' if ph.marks else ''}"], 0.42, colour)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a labelled grid of synthetic phantoms.")
    parser.add_argument("out", help="PNG path")
    parser.add_argument("--n", type=int, default=16, help="number of images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--p-covid", type=float, default=0.8, help="mark probability, COVID-19")
    parser.add_argument("--p-no-finding", type=float, default=0.2, help="mark probability, no finding")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--opacity", type=float, nargs=2, default=(0.4, 1.0))
    parser.add_argument("--columns", type=int, default=4)
    parser.add_argument("--scale", type=int, default=2, help="pixel zoom of each tile")
    args = parser.parse_args(argv)
    source = SyntheticSource(n_patients=max(2, args.n), image_size=args.image_size, opacity=args.opacity,
                             shortcut=ShortcutSpec(p_covid=args.p_covid, p_no_finding=args.p_no_finding),
                             seed=args.seed)
    n = min(args.n, len(source))
    picture = grid([preview_tile(source.render(i), i, args.scale) for i in range(n)], args.columns, fill=60)
    if not cv2.imwrite(args.out, picture):
        print(f"could not write {args.out}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {n} phantoms, {picture.shape[1]}x{picture.shape[0]} px")
    return 0
