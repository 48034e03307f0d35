"""One synthetic source video: its face tracks' timelines, motion, nuisances, frames and label lines.

Each source video draws from its own numpy Generator seeded by (seed, video index), and each of its face tracks
from (seed, video index, track), so videos are independent of each other and of the order they are made in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from affbench_plugins.datasets.synthaffect.facs import FPS, Timeline, make_timeline, smooth_noise
from affbench_plugins.datasets.synthaffect.identity import Identity, Scene, sample_identity, sample_scene
from affbench_plugins.datasets.synthaffect.plan import SourcePlan
from affbench_plugins.datasets.synthaffect.render import (
    SIZE,
    FaceRenderer,
    Occluder,
    Pose,
    make_background,
    make_lighting,
)

INVALID_LINE = {"va": "-5,-5", "expr": "-1", "au": ",".join(["-1"] * 12)}


@dataclass
class SynthTrack:
    """One rendered face track: frames (None where no face image exists) and its label lines per task."""

    video: str
    split: str
    timeline: Timeline
    frames: list[np.ndarray | None]  # one per rendered frame slot; may be longer than the annotation
    n_annotated: int
    invalid: dict[str, np.ndarray]  # task -> bool [n_annotated], True where the label is marked invalid
    tasks: tuple[str, ...]
    identity: Identity = field(repr=False)

    @property
    def n_images(self) -> int:
        return sum(frame is not None for frame in self.frames)

    def label_lines(self, task: str) -> list[str]:
        """The annotation lines (without header) of `task`, one per annotated frame."""
        tl = self.timeline
        n = self.n_annotated
        bad = self.invalid[task]
        if task == "va":
            lines = [f"{_fmt(v)},{_fmt(a)}" for v, a in zip(tl.valence[:n], tl.arousal[:n], strict=True)]
        elif task == "expr":
            lines = [str(int(c)) for c in tl.expression[:n]]
        else:
            lines = [",".join(map(str, row)) for row in tl.au_labels()[:n].tolist()]
        return [INVALID_LINE[task] if b else line for line, b in zip(lines, bad, strict=True)]


def _fmt(value: float) -> str:
    # Adding 0.0 turns a rounded -0.0 into 0.0, so the text never reads "-0.0000".
    return f"{round(float(value), 4) + 0.0:.4f}"


def _spans(rng: np.random.Generator, n: int, rate_per_s: float, length: tuple[int, int]) -> list[tuple[int, int]]:
    """Random [start, end) spans at about `rate_per_s`, lengths in frames."""
    count = rng.poisson(rate_per_s * n / FPS)
    out = []
    for _ in range(count):
        size = int(rng.integers(length[0], length[1] + 1))
        start = int(rng.integers(0, max(1, n - size)))
        out.append((start, min(n, start + size)))
    return out


def head_motion(rng: np.random.Generator, identity: Identity, felt_arousal: np.ndarray) -> list[Pose]:
    """Per-frame head pose: a fixed range of movement whose speed grows with arousal, plus aligner jitter.

    In-plane shift and roll are what face alignment leaves over (small); yaw and pitch are not removed by it.
    """
    n = len(felt_arousal)
    # Aroused people move faster (not further): speed is only visible across frames.
    drive = 0.3 + 2.2 * ((np.clip(felt_arousal, -1, 1) + 1) / 2) ** 1.5
    amplitude = {"roll": 1.5, "yaw": 0.2, "pitch": 0.16, "tx": 1.0, "ty": 0.8, "scale": 0.02}
    tracks = {}
    for key, amp in amplitude.items():
        value = np.zeros(n)
        for _ in range(2):
            freq = rng.uniform(0.2, 0.6)
            phase = np.cumsum(2 * np.pi * freq * drive / FPS) + rng.uniform(0, 2 * np.pi)
            value += rng.uniform(0.5, 1.0) * np.sin(phase)
        tracks[key] = value * amp * identity.motion / 1.5
    jitter = rng.normal(0, 1, size=(n, 3)) * np.array([0.3, 0.2, 0.2])
    return [
        Pose(roll=identity.head_tilt + tracks["roll"][i] + jitter[i, 0], yaw=identity.head_turn + tracks["yaw"][i],
             pitch=tracks["pitch"][i], tx=tracks["tx"][i] + jitter[i, 1], ty=tracks["ty"][i] + jitter[i, 2],
             scale=1.0 + tracks["scale"][i])
        for i in range(n)
    ]


def occluders(rng: np.random.Generator, identity: Identity, n: int) -> list[Occluder | None]:
    """Per-frame occluder (or None): hands over the mouth or cheek, held objects, hair across the eyes."""
    out: list[Occluder | None] = [None] * n
    for start, end in _spans(rng, n, 1 / 12, (20, 75)):
        kind = ("hand", "hand", "object", "hair")[int(rng.integers(4))]
        if kind == "hand":
            x, y, size, colour = rng.uniform(-18, 18), rng.uniform(8, 30), rng.uniform(9, 13), identity.skin
        elif kind == "object":
            x, y, size = rng.uniform(-20, 20), rng.uniform(15, 30), rng.uniform(6, 8)
            colour = tuple(int(c) for c in rng.integers(10, 120, size=3))
        else:
            x, y, size, colour = rng.uniform(-14, 14), rng.uniform(-22, -4), rng.uniform(8, 12), identity.hair
        angle = rng.uniform(-0.6, 0.6)
        length = end - start
        for i in range(start, end):
            # Slide in from below and back out again.
            reach = np.sin(np.pi * (i - start + 0.5) / length) ** 0.5
            out[i] = Occluder(kind, float(x), float(y + (1 - reach) * 45), float(size), float(angle), colour)
    return out


def synthesize_source(seed: int, plan: SourcePlan) -> list[SynthTrack]:
    """Render every face track of one source video (pure: depends only on seed and the plan)."""
    scene_rng = np.random.default_rng([seed, plan.index, 0])
    scene = sample_scene(scene_rng)
    background = make_background(scene)
    lighting = make_lighting(scene)
    n_annotated = plan.n_frames
    n_slots, last_image = n_annotated, n_annotated
    variant = scene_rng.random()
    if variant < 0.25:  # the annotation runs past the last face image
        last_image = n_annotated - int(scene_rng.integers(3, 16))
    elif variant < 0.4:  # the image folder holds frames the annotation does not cover
        n_slots = last_image = n_annotated + int(scene_rng.integers(3, 11))
    light_gain = 1.0 + scene.flicker * smooth_noise(scene_rng, n_slots, period_s=(2.0, 10.0))
    return [
        _synthesize_track(np.random.default_rng([seed, plan.index, k + 1]), plan, track.video, track.tasks, scene,
                          background, lighting, light_gain, n_slots, n_annotated, last_image)
        for k, track in enumerate(plan.tracks)
    ]


def _synthesize_track(rng: np.random.Generator, plan: SourcePlan, video: str, tasks: tuple[str, ...], scene: Scene,
                      background, lighting, light_gain: np.ndarray, n_slots: int, n_annotated: int,
                      last_image: int) -> SynthTrack:
    identity = sample_identity(rng)
    timeline = make_timeline(rng, n_slots, expressiveness=identity.expressiveness,
                             talkativeness=identity.talkativeness)
    poses = head_motion(rng, identity, timeline.felt_arousal)
    occluded = occluders(rng, identity, n_slots)
    gaze_x = 1.2 * smooth_noise(rng, n_slots, period_s=(0.8, 4.0))
    gaze_y = 0.4 * smooth_noise(rng, n_slots, period_s=(1.0, 5.0))

    has_face = np.zeros(n_slots, dtype=bool)
    has_face[:last_image] = True
    for start, end in _spans(rng, n_slots, 1 / 10, (3, 30)):  # the face detector lost the face
        has_face[start:end] = False
    has_face &= rng.random(n_slots) >= 0.01

    invalid = {}
    for task in tasks:
        bad = np.zeros(n_annotated, dtype=bool)
        if rng.random() < 0.4:
            for start, end in _spans(rng, n_annotated, 1 / 8, (10, 60)) or [(0, int(rng.integers(5, 20)))]:
                bad[start:end] = True
        invalid[task] = bad

    renderer = FaceRenderer(identity, scene, background, lighting)
    frames: list[np.ndarray | None] = []
    previous = poses[0]
    for i in range(n_slots):
        pose = poses[i]
        # Fast head movement smears the frame (motion blur grows with speed, hence with arousal).
        speed = np.hypot(pose.tx - previous.tx, pose.ty - previous.ty) + 0.15 * abs(pose.roll - previous.roll)
        previous = pose
        noise = rng.standard_normal((SIZE, SIZE, 3), dtype=np.float32)
        if not has_face[i]:
            frames.append(None)
            continue
        frames.append(renderer.render(timeline.intensity[i], pose, (gaze_x[i], gaze_y[i]), occluded[i],
                                      float(light_gain[i]), scene.blur + 0.35 * speed, noise))
    return SynthTrack(video=video, split=plan.split, timeline=timeline, frames=frames, n_annotated=n_annotated,
                      invalid=invalid, tasks=tasks, identity=identity)
