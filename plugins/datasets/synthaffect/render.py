"""Draw one 112x112 face frame from action-unit intensities, head pose and the scene's nuisances.

The face is drawn with PIL ImageDraw at twice the output size and box-downsampled (cheap anti-aliasing). Every
shape is a polygon or polyline in face coordinates (origin at the face centre, pixels of the 112 crop), moved by
the head pose; parts that stick out (nose, lips) shift more with yaw and pitch than the outline does.
What each AU moves follows FACS: AU1/AU2 raise the inner/outer brow, AU4 lowers and knits it (vertical furrows),
AU5 widens the eye, AU6 raises the cheeks and narrows the eye from below (crow's feet), AU7 tightens the lids,
AU9 wrinkles the nose, AU10 raises the upper lip, AU12 pulls the lip corners up and out, AU14 dimples one corner,
AU15 pulls the corners down, AU23 tightens and narrows the lips, AU24 presses them, AU25 parts them, AU26 drops
the jaw, AU45 closes the eyes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from affbench_plugins.datasets.synthaffect.facs import UNIT_INDEX
from affbench_plugins.datasets.synthaffect.identity import Identity, Scene

SIZE = 112
SUPERSAMPLE = 2
FACE_CENTRE = (56.0, 58.0)
# Face coordinates are laid out for a face of ~65x80 px. Aligned Aff-Wild2 crops are tight, from the brows to
# the chin, with the eyes ~35-40 px apart (the usual 112-px alignment template): at this scale the eyes sit
# ~39 px apart at y ~50 and forehead and chin run off the crop, as they do there. The scale also keeps brows,
# lids and lips several pixels wide after the demo's downsampling to 64 px.
FACE_SCALE = 1.5
# Pixels a unit of yaw / pitch shifts a part of depth 1 (the nose tip).
DEPTH_SHIFT = 7.0

_U = {name: i for name, i in UNIT_INDEX.items()}


@dataclass
class Pose:
    """Head pose of one frame: roll in degrees, yaw / pitch in -1..1, shift in pixels, scale factor."""

    roll: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    scale: float = 1.0


@dataclass
class Occluder:
    """Something in front of the face: a hand, an object or a lock of hair, at a face-relative position."""

    kind: str  # "hand" | "object" | "hair"
    x: float
    y: float
    size: float
    angle: float
    colour: tuple[int, int, int]


def visible_intensity(x: float) -> float:
    """How strongly a unit of intensity `x` (0..1) moves the drawing: 1 - (1 - x)^2.

    Concave, so a slight action (the labelling threshold, 0.35) already moves brows, lids and lips by more than
    half their full range, a few pixels even after downsampling to 64 px, while stronger actions still look
    stronger. A linear mapping left a labelled AU at a pixel or two of movement at 64 px.
    """
    x = min(1.0, max(0.0, x))
    return 1.0 - (1.0 - x) ** 2


def _blend(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    """`colour` darkened (factor < 1) or brightened (factor > 1)."""
    return tuple(int(min(255, max(0, c * factor))) for c in colour)  # type: ignore[return-value]


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    t = min(1.0, max(0.0, t))
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


_UNIT_CIRCLES: dict[int, np.ndarray] = {}


def ellipse_points(cx: float, cy: float, rx: float, ry: float, n: int = 20) -> np.ndarray:
    """(n, 2) points around an ellipse."""
    circle = _UNIT_CIRCLES.get(n)
    if circle is None:
        theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
        circle = _UNIT_CIRCLES[n] = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    return circle * (rx, ry) + (cx, cy)


# Sample positions reused every frame (numpy call overhead dominates at these sizes).
_EYE_T = np.linspace(-1.0, 1.0, 9)
_EYE_SHAPE = np.sqrt(np.clip(1 - _EYE_T ** 2, 0, 1))
_MOUTH_T = np.linspace(0.0, 1.0, 11)


def make_background(scene: Scene) -> Image.Image:
    """The scene's static background at the drawing resolution: a tinted gradient with a few blurry shapes."""
    s = SIZE * SUPERSAMPLE
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    t = np.clip(0.5 + (xx - 0.5) * np.cos(scene.background_angle) + (yy - 0.5) * np.sin(scene.background_angle),
                0, 1)[..., None]
    a = np.array(scene.background[0], dtype=np.float32)
    b = np.array(scene.background[1], dtype=np.float32)
    image = Image.fromarray(np.clip(a * (1 - t) + b * t, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for x, y, r, colour in scene.background_blobs:
        k = SUPERSAMPLE
        draw.ellipse([(x - r) * k, (y - r) * k, (x + r) * k, (y + r) * k], fill=colour)
    return image.filter(ImageFilter.GaussianBlur(6))


def make_lighting(scene: Scene) -> np.ndarray:
    """float32 [112, 112, 3] multiplicative light: directional gradient, overall brightness and colour tint."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    ramp = ((xx - 56) * np.cos(scene.light_angle) + (yy - 56) * np.sin(scene.light_angle)) / 56.0
    light = scene.brightness * (1.0 + scene.light_strength * ramp)
    return (light[..., None] * np.array(scene.tint, dtype=np.float32)).astype(np.float32)


class FaceRenderer:
    """Renders frames of one face track (one identity in one scene)."""

    def __init__(self, identity: Identity, scene: Scene, background: Image.Image, lighting: np.ndarray) -> None:
        self.id = identity
        self.scene = scene
        self.background = background
        self.lighting = lighting

    # -- geometry -------------------------------------------------------------------------------------------------
    def _place(self, points: np.ndarray, depth: float) -> list[float]:
        """Face coordinates -> flat drawing coordinates under the current pose."""
        # Parts that stick out shift with yaw / pitch before the head's rotation, scale and shift apply.
        dx = self._yaw_shift * depth
        dy = self._pitch_shift * depth
        a = self._affine
        ox = a[0, 2] + a[0, 0] * dx + a[0, 1] * dy
        oy = a[1, 2] + a[1, 0] * dx + a[1, 1] * dy
        return (points @ self._linear_t + (ox, oy)).ravel().tolist()

    def _poly(self, points: np.ndarray, depth: float, fill: tuple[int, int, int]) -> None:
        self.draw.polygon(self._place(points, depth), fill=fill)

    def _line(self, points: np.ndarray, depth: float, fill: tuple[int, int, int], width: float) -> None:
        self.draw.line(self._place(points, depth), fill=fill, width=max(1, int(round(width * SUPERSAMPLE))),
                       joint="curve")

    # -- frame ----------------------------------------------------------------------------------------------------
    def render(self, units: np.ndarray, pose: Pose, gaze: tuple[float, float], occluder: Occluder | None,
               light_gain: float, blur: float, noise: np.ndarray) -> np.ndarray:
        """uint8 [112, 112, 3] frame; `noise` is standard-normal [112, 112, 3] sensor noise for this frame."""
        angle = np.deg2rad(pose.roll)
        k = pose.scale * FACE_SCALE * SUPERSAMPLE
        c, s = float(np.cos(angle)) * k, float(np.sin(angle)) * k
        self._affine = np.array([[c, -s, (FACE_CENTRE[0] + pose.tx) * SUPERSAMPLE],
                                 [s, c, (FACE_CENTRE[1] + pose.ty) * SUPERSAMPLE]])
        self._linear_t = self._affine[:, :2].T.copy()
        self._yaw_shift = pose.yaw * DEPTH_SHIFT
        self._pitch_shift = pose.pitch * DEPTH_SHIFT
        image = self.background.copy()
        self.draw = ImageDraw.Draw(image)
        u = {name: visible_intensity(float(units[i])) for name, i in _U.items()}
        ident = self.id

        jaw_drop = 6.0 * u["AU26"] + 0.8 * u["AU25"]
        self._body()
        if ident.hair_style == "long":
            self._poly(ellipse_points(0, 6, ident.face_rx + 8, ident.face_ry + 9, 24), -0.3, ident.hair)
        self._ears()
        self._face(jaw_drop)
        self._cheeks(u)
        eye_y = -5.0
        brow_y = eye_y - ident.brow_gap
        self._forehead(u, brow_y)
        self._brows(u, brow_y)
        self._eyes(u, eye_y, gaze)
        nose_tip = eye_y + ident.nose_len
        mouth_y = nose_tip + 7.5
        corners = self._mouth_corners(u, mouth_y, jaw_drop)
        self._nose(u, eye_y, nose_tip, corners)
        if ident.beard:
            self._beard(mouth_y, jaw_drop)
        self._mouth(u, mouth_y, corners)
        self._hair()
        if ident.glasses:
            self._glasses(eye_y)
        if occluder is not None:
            self._occluder(occluder)

        small = image.reduce(SUPERSAMPLE)
        if blur > 0.25:
            small = small.filter(ImageFilter.GaussianBlur(float(blur)))
        pixels = np.asarray(small, dtype=np.float32) * (self.lighting * light_gain)
        pixels += noise * self.scene.noise_std
        return np.clip(pixels + 0.5, 0, 255).astype(np.uint8)

    # -- parts ----------------------------------------------------------------------------------------------------
    def _body(self) -> None:
        ident = self.id
        neck_w = ident.face_rx * 0.55
        self._poly(np.array([[-neck_w, 10], [neck_w, 10], [neck_w + 2, 60], [-neck_w - 2, 60]]), -0.2,
                   _blend(ident.skin, 0.82))
        shoulders = np.array([[-70, 75], [-55, ident.face_ry + 4], [-neck_w, ident.face_ry + 2],
                              [neck_w, ident.face_ry + 2], [55, ident.face_ry + 4], [70, 75]])
        self._poly(shoulders, -0.3, ident.shirt)

    def _ears(self) -> None:
        ident = self.id
        for side in (-1, 1):
            self._poly(ellipse_points(side * (ident.face_rx + 0.5), -1, 3.2, 6.5, 12), -0.5,
                       _blend(ident.skin, 0.9))

    def _face(self, jaw_drop: float) -> None:
        ident = self.id
        theta = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        down = np.clip(np.sin(theta), 0, None)
        x = ident.face_rx * np.cos(theta) * (1 - (1 - ident.jaw) * down ** 1.5)
        y = np.where(np.sin(theta) < 0, ident.face_ry * np.sin(theta), (ident.face_ry + jaw_drop) * np.sin(theta))
        self._poly(np.stack([x, y], axis=1), 0.0, ident.skin)

    def _cheeks(self, u: dict[str, float]) -> None:
        ident = self.id
        raise_ = u["AU6"]
        colour = _mix(_blend(ident.skin, 1.05), (230, 120, 110), 0.08 + 0.12 * raise_)
        for side in (-1, 1):
            self._poly(ellipse_points(side * (ident.eye_sep + 2.5), 7.5 - 5.0 * raise_, 6.5 + 1.5 * raise_,
                                      4.5 + 1.5 * raise_, 14), 0.5, colour)

    def _forehead(self, u: dict[str, float], brow_y: float) -> None:
        ident = self.id
        lift = u["AU1"] + u["AU2"]
        if lift > 0.25:
            colour = _blend(ident.skin, 1.0 - 0.28 * min(1.0, lift - 0.2))
            half = 5.0 + 9.0 * u["AU2"] / (lift + 1e-6)
            xs = np.linspace(-half, half, 7)
            for k in range(3):
                ys = brow_y - 5.0 - 3.2 * k - 1.2 * u["AU1"] + 1.5 * (xs / half) ** 2
                self._line(np.stack([xs, ys], axis=1), 0.4, colour, 0.8)
        if u["AU4"] > 0.2:
            colour = _blend(ident.skin, 1.0 - 0.5 * u["AU4"])
            for side in (-1, 1):
                self._line(np.array([[side * 2.2, brow_y + 3.5], [side * 1.6, brow_y - 4.5]]), 0.5, colour, 1.0)

    def _brows(self, u: dict[str, float], brow_y: float) -> None:
        ident = self.id
        for side in (-1, 1):
            inner_x = side * (ident.eye_sep - ident.eye_rx * 0.9) - side * 2.2 * u["AU4"]
            xs = np.array([inner_x, side * (ident.eye_sep + ident.eye_rx * 0.1), side * (ident.eye_sep +
                                                                                          ident.eye_rx * 1.3)])
            inner = brow_y + 0.5 * ident.brow_slant - 5.0 * u["AU1"] + 4.2 * u["AU4"] + 1.2 * u["AU9"]
            mid = brow_y - 1.3 - 1.6 * u["AU1"] - 3.6 * u["AU2"] + 3.0 * u["AU4"] + 0.6 * u["AU7"]
            outer = brow_y + 0.4 - 0.4 * u["AU1"] - 4.8 * u["AU2"] + 1.4 * u["AU4"]
            self._line(np.stack([xs, [inner, mid, outer]], axis=1), 0.6, ident.brow_colour, ident.brow_width)

    def _eyes(self, u: dict[str, float], eye_y: float, gaze: tuple[float, float]) -> None:
        ident = self.id
        closed = 1.0 - u["AU45"]
        upper_open = ident.eye_ry * max(0.0, 1 + 0.6 * u["AU5"] - 0.4 * u["AU7"] - 0.2 * u["AU6"]
                                        - 0.12 * u["AU4"]) * closed
        lower_open = ident.eye_ry * 0.7 * max(0.0, 1 - 0.55 * u["AU6"] - 0.45 * u["AU7"]) * closed
        skin = ident.skin
        for side in (-1, 1):
            ex = side * ident.eye_sep
            rx = ident.eye_rx
            xs = _EYE_T * rx
            shape = _EYE_SHAPE
            upper = eye_y - upper_open * shape - 0.3 * side * _EYE_T  # outer corner a bit higher
            lower = eye_y + lower_open * shape - 0.3 * side * _EYE_T
            if upper_open + lower_open > 0.35:
                outline = np.concatenate([np.stack([ex + xs, upper], 1), np.stack([ex + xs, lower], 1)[::-1]])
                self._poly(outline, 0.6, (236, 232, 226))
                self._iris(ex + gaze[0], eye_y + gaze[1], ex, xs, upper, lower)
            # Upper lid with lashes, the crease above it, the lower lid and the bulge under it.
            self._line(np.stack([ex + xs, upper], 1), 0.6, (45, 32, 30), 1.1)
            crease = upper - 2.0 - 0.8 * (1 - u["AU5"]) * shape
            self._line(np.stack([ex + xs * 0.85, crease - 0.4 * u["AU5"]], 1)[1:-1], 0.6, _blend(skin, 0.8), 0.7)
            self._line(np.stack([ex + xs, lower], 1), 0.6, _blend(skin, 0.78), 0.7)
            bulge = u["AU6"] * 0.7 + u["AU7"] * 0.5
            if bulge > 0.15:
                self._line(np.stack([ex + xs * 0.8, lower + 1.6 + 0.3 * shape], 1)[1:-1], 0.55,
                           _blend(skin, 1.0 - 0.3 * min(1.0, bulge)), 0.8)
            if u["AU6"] > 0.25:  # crow's feet
                colour = _blend(skin, 1.0 - 0.35 * u["AU6"])
                ox = ex + side * (rx + 1.0)
                for dy in (-1.8, 0.3, 2.4):
                    self._line(np.array([[ox, eye_y + dy * 0.5], [ox + side * 3.2, eye_y + dy]]), 0.4, colour, 0.7)

    def _iris(self, cx: float, cy: float, ex: float, xs: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> None:
        ident = self.id
        for radius, colour in ((ident.eye_ry * 1.05 + 0.4, ident.iris), (ident.eye_ry * 0.45, (15, 12, 12))):
            dx = _EYE_T * radius
            half = _EYE_SHAPE * radius
            lid_top = np.interp(cx + dx, ex + xs, upper)
            lid_bottom = np.interp(cx + dx, ex + xs, lower)
            top = np.maximum(cy - half, lid_top)
            bottom = np.minimum(cy + half, lid_bottom)
            keep = bottom > top
            if keep.sum() >= 2:
                xs_k = cx + dx[keep]
                poly = np.concatenate([np.stack([xs_k, top[keep]], 1), np.stack([xs_k, bottom[keep]], 1)[::-1]])
                self._poly(poly, 0.65, colour)

    def _mouth_corners(self, u: dict[str, float], mouth_y: float, jaw_drop: float) -> dict[int, tuple[float, float]]:
        ident = self.id
        out = {}
        for side in (-1, 1):
            dimple = u["AU14"] if side == 1 else 0.0  # the dimpler shows on one side (contempt-like)
            x = side * ident.mouth_width * (1 + 0.24 * u["AU12"] - 0.28 * u["AU23"] - 0.1 * u["AU24"]
                                            + 0.05 * u["AU25"] + 0.12 * dimple)
            y = mouth_y + ident.mouth_bias - 4.5 * u["AU12"] + 4.0 * u["AU15"] - 3.0 * dimple + 0.35 * jaw_drop
            out[side] = (x, y)
        return out

    def _nose(self, u: dict[str, float], eye_y: float, tip: float, corners: dict[int, tuple[float, float]]) -> None:
        ident = self.id
        skin = ident.skin
        lift = 1.0 * u["AU9"] + 0.8 * u["AU10"]
        self._line(np.array([[1.6, eye_y + 2], [2.2, tip - 3]]), 0.8, _blend(skin, 0.88), 1.0)
        self._poly(ellipse_points(0, tip - 0.5 - 0.4 * lift, ident.nose_width * 0.75, 2.6, 12), 1.1,
                   _blend(skin, 0.93))
        for side in (-1, 1):
            self._poly(ellipse_points(side * ident.nose_width * 0.5 * (1 + 0.15 * lift), tip + 0.6 - lift, 1.4,
                                      0.9, 8), 1.0, _blend(skin, 0.45))
        if u["AU9"] > 0.2:
            colour = _blend(skin, 1.0 - 0.35 * u["AU9"])
            for dy in (2.0, 3.6):
                self._line(np.array([[-2.4, eye_y + dy], [2.4, eye_y + dy]]), 0.8, colour, 0.7)
        fold = min(1.0, 0.15 + u["AU10"] + 0.8 * u["AU12"] + 0.6 * u["AU9"] + 0.3 * u["AU6"])
        colour = _blend(skin, 1.0 - 0.32 * fold)
        for side in (-1, 1):
            cx, cy = corners[side]
            top = np.array([side * (ident.nose_width + 1.2), tip - 1.0 - 0.8 * lift])
            bottom = np.array([cx + side * 2.2, cy + 2.5])
            mid = (top + bottom) / 2 + np.array([side * (1.5 + 1.5 * u["AU12"]), 0])
            self._line(np.stack([top, mid, bottom]), 0.6, colour, 0.6 + 0.6 * fold)

    def _beard(self, mouth_y: float, jaw_drop: float) -> None:
        ident = self.id
        theta = np.linspace(0.1 * np.pi, 0.9 * np.pi, 14)
        down = np.sin(theta)
        x = ident.face_rx * np.cos(theta) * (1 - (1 - ident.jaw) * down ** 1.5)
        y = (ident.face_ry + jaw_drop) * down
        chin = np.stack([x, y], axis=1)
        top = np.array([[-ident.face_rx * 0.7, mouth_y - 4], [ident.face_rx * 0.7, mouth_y - 4]])[::-1]
        self._poly(np.concatenate([chin, top]), 0.2, _mix(ident.hair, ident.skin, 0.35))

    def _mouth(self, u: dict[str, float], mouth_y: float, corners: dict[int, tuple[float, float]]) -> None:
        ident = self.id
        (lx, ly), (rx, ry) = corners[-1], corners[1]
        t = _MOUTH_T
        xs = lx + (rx - lx) * t
        centre = 1 - (2 * t - 1) ** 2  # 0 at the corners, 1 in the middle
        line = ly + (ry - ly) * t
        line = line + centre * (mouth_y - (ly + ry) / 2)
        gap = max(0.0, (2.4 * u["AU25"] + 7.0 * u["AU26"]) * (1 - 0.8 * u["AU24"]) * (1 - 0.4 * u["AU23"]))
        raise_upper = 1.8 * u["AU10"]
        c7 = centre ** 0.7
        upper_inner = line - c7 * (gap / 2 + raise_upper)
        lower_inner = line + c7 * gap / 2
        thin_u = max(0.25, 1 - 0.55 * u["AU23"] - 0.5 * u["AU24"])
        thin_l = max(0.25, 1 - 0.5 * u["AU23"] - 0.55 * u["AU24"])
        c5 = centre ** 0.5
        cupid = 0.45 * np.exp(-(((2 * t - 1) / 0.14) ** 2))
        upper_outer = upper_inner - ident.lip_upper * thin_u * (0.3 + 0.7 * c5) + ident.lip_upper * cupid * thin_u
        lower_outer = lower_inner + ident.lip_lower * thin_l * (0.3 + 0.7 * c5)
        lips = np.concatenate([np.stack([xs, upper_outer], 1), np.stack([xs, lower_outer], 1)[::-1]])
        self._poly(lips, 0.75, _blend(ident.lip_colour, 1.0 - 0.12 * u["AU24"]))
        if gap + raise_upper > 0.5:
            interior = np.concatenate([np.stack([xs, upper_inner], 1), np.stack([xs, lower_inner], 1)[::-1]])
            self._poly(interior, 0.75, (55, 22, 26))
            teeth = min(gap + raise_upper, 2.4) * c5
            keep = slice(2, -2)
            band = np.concatenate([np.stack([xs[keep], upper_inner[keep]], 1),
                                   np.stack([xs[keep], (upper_inner + teeth)[keep]], 1)[::-1]])
            self._poly(band, 0.75, (232, 228, 214))
        else:
            self._line(np.stack([xs, line], 1), 0.75, _blend(ident.lip_colour, 0.55), 0.8)
        if u["AU14"] > 0.3:  # the dimple beside the tightened corner
            colour = _blend(ident.skin, 1.0 - 0.35 * u["AU14"])
            self._line(np.array([[rx + 1.5, ry - 1.5], [rx + 2.3, ry + 0.5], [rx + 1.6, ry + 2.2]]), 0.7, colour, 0.9)
        press = u["AU24"] + 0.5 * u["AU23"]
        if press > 0.3:  # pressed lips push the chin boss up: a crease under the lower lip
            under = lower_outer + 1.8
            self._line(np.stack([xs, under], 1)[2:-2], 0.7, _blend(ident.skin, 1.0 - 0.3 * min(1.0, press)), 0.8)
        if ident.moustache:
            band = np.concatenate([np.stack([xs[1:-1], (upper_outer - 3.0)[1:-1]], 1),
                                   np.stack([xs[1:-1], (upper_outer - 0.4)[1:-1]], 1)[::-1]])
            self._poly(band, 0.8, _mix(ident.hair, ident.skin, 0.2))

    def _hair(self) -> None:
        ident = self.id
        if ident.hair_style == "bald":
            return
        rx, ry = ident.face_rx + 2.5, ident.face_ry + 3.0
        theta = np.linspace(np.pi * 0.95, np.pi * 2.05, 18)
        cap = np.stack([rx * np.cos(theta), ry * np.sin(theta) - 1], axis=1)
        line_y = -ident.face_ry * (0.42 if ident.hair_style == "fringe" else 0.6)
        xs = np.linspace(rx * np.cos(theta[-1]), rx * np.cos(theta[0]), 9)
        hairline = np.stack([xs, line_y + 4.0 * (xs / rx) ** 2 + (2.5 if ident.hair_style != "fringe" else 0)], 1)
        self._poly(np.concatenate([cap, hairline]), 0.0, ident.hair)
        if ident.hair_style == "bun":
            self._poly(ellipse_points(0, -ident.face_ry - 6, 8, 6, 12), -0.2, ident.hair)

    def _glasses(self, eye_y: float) -> None:
        ident = self.id
        frame = (30, 28, 30)
        for side in (-1, 1):
            ring = ellipse_points(side * ident.eye_sep, eye_y + 0.5, ident.eye_rx + 2.8, ident.eye_ry + 3.2, 16)
            self._line(np.concatenate([ring, ring[:1]]), 0.7, frame, 0.9)
        gap = ident.eye_sep - ident.eye_rx - 2.8
        self._line(np.array([[-gap, eye_y - 0.5], [gap, eye_y - 0.5]]), 0.8, frame, 0.9)

    def _occluder(self, occ: Occluder) -> None:
        c, s = np.cos(occ.angle), np.sin(occ.angle)
        rot = np.array([[c, -s], [s, c]])

        def shape(points: np.ndarray) -> np.ndarray:
            return points @ rot.T * occ.size + np.array([occ.x, occ.y])

        if occ.kind == "hand":
            self._poly(shape(ellipse_points(0, 0, 1.0, 0.8, 16)), 1.5, occ.colour)
            for k in range(4):
                finger = ellipse_points(-0.6 + 0.4 * k, -1.1, 0.17, 0.6, 10)
                self._poly(shape(finger), 1.5, _blend(occ.colour, 0.95))
        elif occ.kind == "object":
            self._poly(shape(np.array([[-0.3, -1.0], [0.3, -1.0], [0.3, 3.0], [-0.3, 3.0]])), 1.5, occ.colour)
            self._poly(shape(ellipse_points(0, -1.0, 0.55, 0.55, 12)), 1.5, _blend(occ.colour, 0.7))
        else:
            for k in range(5):
                strand = np.array([[-1.0 + 0.3 * k, -1.0], [-0.6 + 0.35 * k, 0.0], [-0.8 + 0.3 * k, 1.0]])
                self._line(shape(strand), 1.2, occ.colour, 1.6)
