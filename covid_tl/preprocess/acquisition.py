"""A hospital's imaging chain: what makes its films look like its own, whatever they show.

Hospitals differ in dose, display LUT (gamma, window), detector resolution and blur, noise,
collimation borders, burned-in text and JPEG export. Where each class comes from its own
hospital, a model can tell the classes apart by these alone (the source shortcut);
`data=synthetic_shift` gives every simulated hospital one chain over the phantoms to reproduce
that. uint8 in, uint8 out, geometry unchanged (lung masks still fit).
"""
from __future__ import annotations

from typing import Annotated, Literal

import cv2
import numpy as np
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as checked_dataclass

from covid_tl.preprocess.steps import ordered_range, step_range

Positive = Annotated[float, Field(gt=0.0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Grey = Annotated[int, Field(ge=0, le=255)]


@checked_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class AcquisitionChain:
    """One hospital's chain; each range but `window` is drawn uniformly per image (equal ends: fixed).
    gamma, downscale, blur, noise and jpeg are steps of covid_tl.preprocess.steps.STEPS, in its
    units and bounds (the augmentation's too); exposure and window are the hospital's own."""

    exposure: ordered_range(Positive) = (1.0, 1.0)  # gain on the signal (dose)
    gamma: step_range("gamma") = (1.0, 1.0)
    window: ordered_range(Fraction) = (0.0, 1.0)  # signal levels shown as black and white
    downscale: step_range("downscale") = (1.0, 1.0)  # the detector's sampling
    blur: step_range("blur") = (0.0, 0.0)
    noise: step_range("noise") = (0.0, 0.0)
    border: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.0  # collimation band, fraction of each side
    border_value: Grey = 0
    text: str = ""  # burned-in text ("": none)
    text_corner: Literal["top_left", "top_right", "bottom_left", "bottom_right"] = "top_left"
    text_height: Annotated[float, Field(gt=0.0, le=0.3)] = 0.05  # cap height, fraction of the shorter side
    text_value: Grey = 255
    jpeg: step_range("jpeg", int) | None = None  # None: stored lossless

    def __post_init__(self) -> None:
        if self.window[0] >= self.window[1]:
            raise ValueError(f"window must be [low, high] with low < high, got {list(self.window)}")


def window_gamma(signal: np.ndarray, low: float, high: float, gamma: float) -> np.ndarray:
    """Display LUT: `low`..`high` of the signal stretched to 0..1 (clipped), then ** gamma."""
    return np.clip((signal - low) / (high - low), 0.0, 1.0) ** gamma


def resample(image: np.ndarray, fraction: float) -> np.ndarray:
    """A detector that samples `fraction` of the pixels per side (area average), shown at full size."""
    h, w = image.shape[:2]
    small = (max(1, round(w * fraction)), max(1, round(h * fraction)))
    if small == (w, h):
        return image
    return cv2.resize(cv2.resize(image, small, interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_LINEAR)


def collimate(image: np.ndarray, fraction: float, value: int) -> np.ndarray:
    """A band of `fraction` of the height (top, bottom) and width (left, right) set to `value`."""
    h, w = image.shape[:2]
    dy, dx = round(h * fraction), round(w * fraction)
    out = image.copy()
    if dy:
        out[:dy], out[h - dy:] = value, value
    if dx:
        out[:, :dx], out[:, w - dx:] = value, value
    return out


def burn_text(image: np.ndarray, text: str, corner: str, height: float, value: int,
              margin: float = 0.03) -> np.ndarray:
    """`text` in a Hershey font, cap height `height` x the shorter side, inset `margin` from `corner`."""
    h, w = image.shape[:2]
    side = min(h, w)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)
    scale = min(height * side / th, (1 - 2 * margin) * w / tw)
    thickness = max(1, round(scale * th / 8))
    x = round(margin * side) if corner.endswith("left") else w - round(margin * side) - round(scale * tw)
    y = round(margin * side + scale * th) if corner.startswith("top") else h - round(margin * side + scale * base)
    out = image.copy()
    cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, int(value), thickness, cv2.LINE_AA)
    return out


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """The image after a JPEG round trip at `quality` (1-100)."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


def acquire(image: np.ndarray, chain: AcquisitionChain, rng: np.random.Generator) -> np.ndarray:
    """The uint8 image as `chain`'s hospital would store it: dose, detector (resolution, blur,
    noise), display LUT, shutter, burned-in text, export. `rng` draws the per-image values."""
    def draw(pair: tuple[float, float]) -> float:
        return float(rng.uniform(*pair)) if pair[0] < pair[1] else float(pair[0])

    signal = image.astype(np.float32) * (draw(chain.exposure) / 255.0)
    signal = resample(signal, draw(chain.downscale))
    sigma = draw(chain.blur) * min(image.shape[:2])
    if sigma >= 0.1:
        signal = cv2.GaussianBlur(signal, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    noise = draw(chain.noise)
    if noise:
        signal = signal + noise * rng.standard_normal(signal.shape, dtype=np.float32)
    shown = window_gamma(signal, *chain.window, draw(chain.gamma))
    out = np.rint(shown * 255.0).astype(np.uint8)
    if chain.border:
        out = collimate(out, chain.border, chain.border_value)
    if chain.text:
        out = burn_text(out, chain.text, chain.text_corner, chain.text_height, chain.text_value)
    if chain.jpeg is not None:
        out = jpeg(out, round(draw(chain.jpeg)))
    return out
