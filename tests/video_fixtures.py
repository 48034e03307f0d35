"""Short test videos made with PyAV: real face photos (shipped by scikit-image and matplotlib) pasted at known
places, so face detection, tracking and alignment are checked against where the faces really were."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WIDTH, HEIGHT, FPS = 320, 240, 10
FACE_WIDTH = 64
# Hand-marked face boxes (x0, y0, x1, y1: forehead to chin, cheek to cheek) in the shipped photos.
PHOTO_BOXES = {"astronaut": (183, 72, 268, 177), "grace_hopper": (172, 145, 352, 345)}


def face_patches() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per photo: (the face with some context, scaled to FACE_WIDTH wide faces; its face box in the patch)."""
    import matplotlib
    from PIL import Image
    from skimage import data

    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    photos = {"astronaut": data.astronaut(), "grace_hopper": np.asarray(Image.open(hopper).convert("RGB"))}
    out = {}
    for name, photo in photos.items():
        x0, y0, x1, y1 = PHOTO_BOXES[name]
        w, h = x1 - x0, y1 - y0
        cx0, cy0 = max(0, x0 - w // 3), max(0, y0 - h // 3)
        cx1, cy1 = min(photo.shape[1], x1 + w // 3), min(photo.shape[0], y1 + h // 3)
        scale = FACE_WIDTH / w
        size = (round((cx1 - cx0) * scale), round((cy1 - cy0) * scale))
        patch = np.asarray(Image.fromarray(photo[cy0:cy1, cx0:cx1]).resize(size, Image.BILINEAR))
        box = np.array([(x0 - cx0) * scale, (y0 - cy0) * scale, (x1 - cx0) * scale, (y1 - cy0) * scale])
        out[name] = (patch, box)
    return out


def write_video(path: Path, frames: list[np.ndarray], fps: int = FPS) -> Path:
    """Encode uint8 RGB frames as an MPEG-4 video (high bitrate: compression must not hide the faces)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 4_000_000
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def two_face_video(path: Path, n_frames: int = 24, *, right_span: tuple[int, int] = (9, 20),
                   left_gap: tuple[int, ...] = (15, 16)) -> dict[str, dict[int, np.ndarray]]:
    """A video with the astronaut on the left in every frame but `left_gap`, Grace Hopper on the right in
    `right_span` (1-based, inclusive); both drift slowly. Returns, per side, frame -> true face box."""
    patches = face_patches()
    rng = np.random.default_rng(0)
    base = rng.integers(60, 200, size=(HEIGHT // 40, WIDTH // 40, 3)).astype(np.uint8)
    from PIL import Image

    background = np.asarray(Image.fromarray(base).resize((WIDTH, HEIGHT), Image.BICUBIC))
    truth: dict[str, dict[int, np.ndarray]] = {"left": {}, "right": {}}
    frames = []
    for frame in range(1, n_frames + 1):
        pixels = background.copy()
        placements = []
        if frame not in left_gap:
            placements.append(("left", "astronaut", 20 + frame, 40 + frame // 2))
        if right_span[0] <= frame <= right_span[1]:
            placements.append(("right", "grace_hopper", 190 - frame, 50))
        for side, photo, x, y in placements:
            patch, box = patches[photo]
            pixels[y:y + patch.shape[0], x:x + patch.shape[1]] = patch
            truth[side][frame] = box + np.array([x, y, x, y])
        frames.append(pixels)
    write_video(path, frames)
    return truth
