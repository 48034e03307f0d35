"""FACS timeline of one synthetic face track: expression episodes -> action-unit intensities -> labels.

Everything a frame shows and every label it carries comes from this timeline: expression episodes (seconds
long, with onset / apex / offset ramps) drive action units through the usual prototypes, spontaneous AUs
(speech, lip presses, brow flashes, squints, blinks) come on top, and valence / arousal are smooth trajectories
tied to the episodes plus a slowly drifting mood. The renderer draws the intensities; the labels threshold them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from affbench.data.affwild2_layout import ACTION_UNITS, EXPRESSIONS

FPS = 30.0

# Intensities the labels do not list but the face shows (upper-lid raiser, nose wrinkler, dimpler, blink):
# real faces carry them too, and they keep the labelled AUs from being the only thing that moves.
HIDDEN_UNITS = ("AU5", "AU9", "AU14", "AU45")
UNITS = ACTION_UNITS + HIDDEN_UNITS
UNIT_INDEX = {name: i for i, name in enumerate(UNITS)}

# An AU is labelled present from this intensity on (FACS "B", slight evidence, on a 0..1 scale).
AU_THRESHOLD = 0.35
# An expression episode is labelled from this much of its apex on; weaker frames are Neutral.
EXPR_THRESHOLD = 0.3

NEUTRAL, ANGER, DISGUST, FEAR, HAPPINESS, SADNESS, SURPRISE, OTHER = range(len(EXPRESSIONS))

# Prototype AU intensities at the apex of each basic expression (EMFACS-style).
PROTOTYPES: dict[int, dict[str, float]] = {
    HAPPINESS: {"AU6": 0.8, "AU12": 1.0},
    SADNESS: {"AU1": 0.85, "AU4": 0.6, "AU15": 0.85},
    SURPRISE: {"AU1": 0.9, "AU2": 0.9, "AU25": 0.75, "AU26": 0.8, "AU5": 0.7},
    FEAR: {"AU1": 0.85, "AU2": 0.7, "AU4": 0.7, "AU25": 0.65, "AU5": 0.8},
    ANGER: {"AU4": 0.95, "AU7": 0.85, "AU23": 0.85, "AU5": 0.3},
    DISGUST: {"AU10": 0.9, "AU15": 0.55, "AU9": 0.8},
}
# AUs a prototype may be missing in one episode (the core AUs of each expression always show).
CORE_UNITS = {HAPPINESS: ("AU12",), SADNESS: ("AU15",), SURPRISE: ("AU2",), FEAR: ("AU4",),
              ANGER: ("AU4",), DISGUST: ("AU10",)}
# "Other": mixtures that match no basic prototype (contempt-like one-sided dimpler, pressed lips, squints).
OTHER_POOL = ("AU24", "AU7", "AU10", "AU12", "AU2", "AU26", "AU15")

# How often each class starts an episode, Aff-Wild2-like (happiness and "other" common, fear and disgust rare).
EPISODE_CLASSES = (HAPPINESS, SADNESS, ANGER, SURPRISE, FEAR, DISGUST, OTHER)
EPISODE_WEIGHTS = np.array([0.24, 0.15, 0.12, 0.12, 0.08, 0.08, 0.21])

# Valence / arousal at the apex of each class (centre), before per-episode variation.
CLASS_VA: dict[int, tuple[float, float]] = {
    ANGER: (-0.6, 0.7), DISGUST: (-0.6, 0.35), FEAR: (-0.55, 0.75), HAPPINESS: (0.7, 0.45),
    SADNESS: (-0.6, -0.35), SURPRISE: (0.2, 0.8), OTHER: (-0.1, 0.2),
}


@dataclass
class Episode:
    """One expression episode: class, timing in frames and apex intensity per unit."""

    cls: int
    start: int
    onset: int
    apex: int
    offset: int
    units: dict[str, float]
    valence: float
    arousal: float

    @property
    def end(self) -> int:
        return self.start + self.onset + self.apex + self.offset


@dataclass
class Timeline:
    """Per-frame state of one face track: unit intensities, motion drive and the labels they imply."""

    intensity: np.ndarray  # float32 [n, len(UNITS)] in [0, 1]
    expression: np.ndarray  # int64 [n] class index
    valence: np.ndarray  # float32 [n] in [-1, 1], as an annotator would trace it
    arousal: np.ndarray  # float32 [n] in [-1, 1]
    felt_arousal: np.ndarray  # float32 [n]: arousal the face acts on (the trace lags behind it)
    episodes: list[Episode]

    @property
    def n_frames(self) -> int:
        return len(self.expression)

    def au_labels(self) -> np.ndarray:
        """int [n, 12]: 1 where a labelled AU's intensity reaches AU_THRESHOLD."""
        return (self.intensity[:, : len(ACTION_UNITS)] >= AU_THRESHOLD).astype(np.int64)


def envelope(episode: Episode, n: int) -> np.ndarray:
    """[n] 0..1: cosine onset ramp, a slightly wavering apex, cosine offset ramp."""
    out = np.zeros(n, dtype=np.float64)
    t = np.arange(n, dtype=np.float64)
    s, a, b, e = episode.start, episode.start + episode.onset, episode.start + episode.onset + episode.apex, \
        episode.end
    on = (t >= s) & (t < a)
    out[on] = 0.5 - 0.5 * np.cos(np.pi * (t[on] - s) / max(episode.onset, 1))
    out[(t >= a) & (t < b)] = 1.0
    off = (t >= b) & (t < e)
    out[off] = 0.5 + 0.5 * np.cos(np.pi * (t[off] - b) / max(episode.offset, 1))
    return out


def smooth_noise(rng: np.random.Generator, n: int, *, period_s: tuple[float, float], components: int = 3
                 ) -> np.ndarray:
    """[n] zero-mean smooth drift with unit-ish amplitude: a few sinusoids with random periods and phases."""
    t = np.arange(n, dtype=np.float64) / FPS
    out = np.zeros(n)
    for _ in range(components):
        period = rng.uniform(*period_s)
        out += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    return out / np.sqrt(components / 2)


def _seconds(rng: np.random.Generator, low: float, high: float) -> int:
    return max(1, int(round(rng.uniform(low, high) * FPS)))


def _episode_units(rng: np.random.Generator, cls: int, strength: float) -> dict[str, float]:
    if cls == OTHER:
        # A one-sided dimple (contempt-like) plus one or two other AUs.
        chosen = rng.choice(len(OTHER_POOL), size=int(rng.integers(1, 3)), replace=False)
        units = {OTHER_POOL[i]: strength * rng.uniform(0.6, 1.0) for i in chosen}
        units["AU14"] = strength * rng.uniform(0.7, 1.0)
        return units
    units = {}
    for unit, apex in PROTOTYPES[cls].items():
        if unit not in CORE_UNITS[cls] and rng.random() < 0.15:
            continue  # real episodes often miss a prototype AU
        units[unit] = min(1.0, strength * apex * rng.uniform(0.75, 1.2))
    if cls == HAPPINESS and rng.random() < 0.35:  # laughter parts the lips
        units["AU25"] = strength * rng.uniform(0.5, 0.9)
        units["AU26"] = strength * rng.uniform(0.2, 0.7)
    return units


def plan_episodes(rng: np.random.Generator, n: int, expressiveness: float) -> list[Episode]:
    """Non-overlapping expression episodes with neutral gaps between them, covering `n` frames."""
    episodes: list[Episode] = []
    t = _seconds(rng, 0.0, 2.5)
    while t < n:
        cls = int(rng.choice(EPISODE_CLASSES, p=EPISODE_WEIGHTS))
        strength = expressiveness * rng.uniform(0.75, 1.0)
        v0, a0 = CLASS_VA[cls]
        episode = Episode(
            cls=cls, start=t, onset=_seconds(rng, 0.25, 0.8), apex=_seconds(rng, 0.6, 3.0),
            offset=_seconds(rng, 0.3, 1.2), units=_episode_units(rng, cls, strength),
            valence=float(np.clip(v0 + rng.normal(0, 0.12), -0.95, 0.95)) * strength,
            arousal=float(np.clip(a0 + rng.normal(0, 0.12), -0.95, 0.95)) * strength,
        )
        episodes.append(episode)
        t = episode.end + _seconds(rng, 0.4, 2.5)
    return episodes


def _bursts(rng: np.random.Generator, n: int, rate_per_s: float, dur_s: tuple[float, float]) -> list[tuple[int, int]]:
    """Random (start, length) events at about `rate_per_s`."""
    out = []
    t = int(rng.exponential(FPS / rate_per_s))
    while t < n:
        length = _seconds(rng, *dur_s)
        out.append((t, length))
        t += length + int(rng.exponential(FPS / rate_per_s))
    return out


def _bump(n: int, start: int, length: int) -> np.ndarray:
    """[n] a raised-cosine bump over [start, start+length)."""
    t = np.arange(n, dtype=np.float64)
    out = np.zeros(n)
    inside = (t >= start) & (t < start + length)
    out[inside] = np.sin(np.pi * (t[inside] - start + 0.5) / length)
    return out


def _annotator_trace(rng: np.random.Generator, signal: np.ndarray, lag: int) -> np.ndarray:
    """What a continuous annotator records: the felt signal, lagged, smoothed, with a little drift."""
    n = len(signal)
    lagged = np.concatenate([np.full(lag, signal[0]), signal[: n - lag]]) if lag else signal
    kernel = np.hanning(15)
    kernel /= kernel.sum()
    padded = np.pad(lagged, 7, mode="edge")
    trace = np.convolve(padded, kernel, mode="valid")
    trace += 0.04 * smooth_noise(rng, n, period_s=(1.5, 6.0), components=2)
    return np.clip(trace, -1.0, 1.0)


def make_timeline(rng: np.random.Generator, n: int, *, expressiveness: float, talkativeness: float) -> Timeline:
    """The full per-frame FACS state and labels of one face track of `n` frames."""
    episodes = plan_episodes(rng, n, expressiveness)
    units = np.zeros((n, len(UNITS)))
    expression = np.zeros(n, dtype=np.int64)
    valence = 0.22 * smooth_noise(rng, n, period_s=(8.0, 30.0)) + rng.uniform(-0.1, 0.15)
    arousal = 0.18 * smooth_noise(rng, n, period_s=(6.0, 25.0)) + rng.uniform(-0.15, 0.15)
    mood_valence = valence.copy()
    mood_arousal = arousal.copy()
    for episode in episodes:
        env = envelope(episode, n)
        for unit, apex in episode.units.items():
            units[:, UNIT_INDEX[unit]] += apex * env
        expression[env >= EXPR_THRESHOLD] = episode.cls
        # The episode pulls valence / arousal towards its own values while it lasts.
        valence = valence * (1 - env) + episode.valence * env
        arousal = arousal * (1 - env) + episode.arousal * env

    # A good mood shows as a faint smile, a bad one as faintly lowered corners: below the AU threshold.
    units[:, UNIT_INDEX["AU12"]] += np.clip(mood_valence * 0.9, 0, 0.3)
    units[:, UNIT_INDEX["AU15"]] += np.clip(-mood_valence * 0.8, 0, 0.3)
    units[:, UNIT_INDEX["AU5"]] += np.clip(mood_arousal * 0.6, 0, 0.4)

    # Speech: syllable-rate lip parting (AU25 mostly above threshold), small jaw movement, brow flashes.
    speech = np.zeros(n)
    t_s = np.arange(n) / FPS
    for start, length in _bursts(rng, n, 0.12 * talkativeness, (1.0, 4.0)):
        window = _bump(n, start, length) ** 0.3
        rate = rng.uniform(3.0, 5.0)
        syllables = np.abs(np.sin(2 * np.pi * rate * t_s + rng.uniform(0, np.pi)))
        speech = np.maximum(speech, window * (0.3 + 0.5 * syllables))
    units[:, UNIT_INDEX["AU25"]] += speech
    units[:, UNIT_INDEX["AU26"]] += 0.35 * speech
    for start, length in _bursts(rng, n, 0.06 * talkativeness, (0.3, 0.8)):
        flash = rng.uniform(0.4, 0.8) * _bump(n, start, length)
        units[:, UNIT_INDEX["AU1"]] += flash
        units[:, UNIT_INDEX["AU2"]] += flash * rng.uniform(0.7, 1.0)
    # Spontaneous lip presses and squints, not part of any expression.
    for unit, rate in (("AU24", 0.05), ("AU7", 0.04), ("AU10", 0.02)):
        for start, length in _bursts(rng, n, rate, (0.4, 1.5)):
            units[:, UNIT_INDEX[unit]] += rng.uniform(0.4, 0.9) * _bump(n, start, length)

    # Blinks: faster when aroused; a blink is 4-6 frames of closing and reopening.
    t = int(rng.uniform(0.2, 3.0) * FPS)
    while t < n:
        length = int(rng.integers(4, 7))
        units[t: t + length, UNIT_INDEX["AU45"]] = np.sin(np.pi * (np.arange(length) + 0.5) / length)[: n - t]
        rate = 0.25 * (1.0 + 0.8 * np.clip(arousal[t], -0.5, 1.0))
        t += length + int(rng.exponential(FPS / rate)) + 3

    units = np.clip(units, 0.0, 1.0)
    felt_valence = np.clip(valence, -1, 1)
    felt_arousal = np.clip(arousal, -1, 1)
    lag = int(rng.integers(3, 9))
    return Timeline(
        intensity=units.astype(np.float32),
        expression=expression,
        valence=_annotator_trace(rng, felt_valence, lag).astype(np.float32),
        arousal=_annotator_trace(rng, felt_arousal, lag).astype(np.float32),
        felt_arousal=felt_arousal.astype(np.float32),
        episodes=episodes,
    )
