"""Who is filmed and where: a face track's identity (shape, skin, features) and a source video's scene.

Identities and scenes are the nuisances a model must see through: face shape, skin tone, hair, glasses and beard,
resting-face biases (a mouth that turns down at rest, a high brow), background, light, sensor noise and blur.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Skin tones from light to dark (sRGB); an identity interpolates between two neighbours.
SKIN_TONES = np.array([
    (250, 221, 196), (234, 192, 160), (214, 163, 126), (186, 128, 92), (141, 89, 58), (96, 62, 42),
], dtype=np.float64)
HAIR_COLOURS = np.array([
    (25, 20, 18), (60, 40, 28), (110, 75, 45), (170, 130, 80), (215, 190, 140), (140, 140, 140), (120, 40, 25),
], dtype=np.float64)
IRIS_COLOURS = np.array([(60, 40, 25), (90, 60, 35), (70, 100, 130), (80, 110, 70), (40, 30, 25)],
                        dtype=np.float64)
HAIR_STYLES = ("short", "long", "bald", "fringe", "bun")


@dataclass
class Identity:
    """The fixed look of one person (lengths in pixels of the 112x112 crop)."""

    face_rx: float
    face_ry: float
    jaw: float  # lower-face width relative to the cheeks (0.65 pointed .. 1 square)
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_style: str
    brow_colour: tuple[int, int, int]
    brow_width: float
    brow_gap: float  # brow height above the eye
    brow_slant: float  # resting inner-brow offset (+ = lower, a "stern" rest face)
    eye_sep: float
    eye_rx: float
    eye_ry: float
    iris: tuple[int, int, int]
    nose_len: float
    nose_width: float
    mouth_width: float
    lip_upper: float
    lip_lower: float
    lip_colour: tuple[int, int, int]
    mouth_bias: float  # resting lip-corner offset (+ = down-turned)
    glasses: bool
    beard: bool
    moustache: bool
    shirt: tuple[int, int, int]
    # Aligned crops (as Aff-Wild2's) remove most in-plane roll and keep eyes and mouth near template
    # positions, so resting roll and the eye-mouth distance vary little; yaw survives alignment.
    head_tilt: float  # resting roll in degrees
    head_turn: float  # resting yaw (-1 .. 1)
    expressiveness: float  # how strongly this person's episodes show
    talkativeness: float
    motion: float  # how much this person moves their head


@dataclass
class Scene:
    """What one source video shares between its faces: background, light, optics and sensor."""

    background: tuple[tuple[int, int, int], tuple[int, int, int]]
    background_angle: float
    background_blobs: list[tuple[float, float, float, tuple[int, int, int]]]
    light_angle: float
    light_strength: float
    brightness: float
    tint: tuple[float, float, float]
    noise_std: float
    blur: float
    flicker: float


def _colour(rgb: np.ndarray) -> tuple[int, int, int]:
    c = np.clip(np.round(rgb), 0, 255).astype(int)
    return int(c[0]), int(c[1]), int(c[2])


def sample_identity(rng: np.random.Generator) -> Identity:
    """A random person."""
    tone = rng.uniform(0, len(SKIN_TONES) - 1)
    i = int(tone)
    skin = SKIN_TONES[i] * (1 - (tone - i)) + SKIN_TONES[min(i + 1, len(SKIN_TONES) - 1)] * (tone - i)
    skin = skin * rng.uniform(0.95, 1.05, size=3)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.85, 1.15)
    lip = skin * np.array([0.85, 0.6, 0.6]) + np.array([20, 0, 5])
    brow = hair * 0.8 if rng.random() < 0.8 else skin * 0.45
    bearded = rng.random() < 0.15
    return Identity(
        face_rx=rng.uniform(29, 36), face_ry=rng.uniform(37, 44), jaw=rng.uniform(0.65, 0.95),
        skin=_colour(skin), hair=_colour(hair), hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
        brow_colour=_colour(brow), brow_width=rng.uniform(1.6, 3.4), brow_gap=rng.uniform(6.5, 9.5),
        brow_slant=rng.normal(0, 0.8), eye_sep=rng.uniform(12.0, 14.0), eye_rx=rng.uniform(5.0, 6.8),
        eye_ry=rng.uniform(2.6, 3.6), iris=_colour(IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))]),
        nose_len=rng.uniform(11, 14), nose_width=rng.uniform(3.5, 5.5), mouth_width=rng.uniform(8.5, 11.5),
        lip_upper=rng.uniform(1.6, 3.0), lip_lower=rng.uniform(2.0, 3.6), lip_colour=_colour(lip),
        mouth_bias=rng.normal(0, 0.8), glasses=bool(rng.random() < 0.2), beard=bearded,
        moustache=bool(bearded or rng.random() < 0.08), shirt=_colour(rng.uniform(10, 240, size=3)),
        head_tilt=rng.normal(0, 1.0), head_turn=rng.normal(0, 0.1), expressiveness=rng.uniform(0.8, 1.15),
        talkativeness=rng.uniform(0.3, 1.5), motion=rng.uniform(0.6, 1.4),
    )


def sample_scene(rng: np.random.Generator) -> Scene:
    """A random recording setting."""
    base = rng.uniform(30, 220, size=3)
    other = np.clip(base + rng.normal(0, 40, size=3), 0, 255)
    blobs = [
        (rng.uniform(0, 112), rng.uniform(0, 112), rng.uniform(8, 35), _colour(rng.uniform(20, 235, size=3)))
        for _ in range(int(rng.integers(0, 5)))
    ]
    return Scene(
        background=(_colour(base), _colour(other)), background_angle=rng.uniform(0, 2 * np.pi),
        background_blobs=blobs, light_angle=rng.uniform(0, 2 * np.pi), light_strength=rng.uniform(0.05, 0.35),
        brightness=rng.uniform(0.7, 1.15), tint=tuple(float(x) for x in rng.uniform(0.9, 1.1, size=3)),
        noise_std=rng.uniform(1.0, 7.0), blur=float(rng.choice([0.0, 0.0, 0.4, 0.7, 1.0])),
        flicker=rng.uniform(0.0, 0.06),
    )
