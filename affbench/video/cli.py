"""Command-line hooks for your own videos: `affbench data crop` and `affbench predict --video`."""

from __future__ import annotations

import argparse
from pathlib import Path

from affbench.cli_support import add_quiet_argument, reporting_input_errors


def add_detection_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by `data crop` and `predict --video`: which detector, where it runs, how tracks link."""
    from affbench.video.options import DETECTOR_NAMES, CropOptions

    defaults = CropOptions()
    group = parser.add_argument_group("face detection and tracking")
    group.add_argument("--detector", choices=DETECTOR_NAMES, default=defaults.detector,
                       help=f"face detector (default {defaults.detector}: boxes and five keypoints, aligned crops; "
                            "haar: boxes only, crops of the box with a margin)")
    group.add_argument("--device", default=None,
                       help=f"where detection runs (and, for predict, the run's models): {defaults.device} (default "
                            "with --video), cuda, cuda:1 ... (frames are detected in batches); predict without "
                            "--video: the run's config device, else auto")
    group.add_argument("--batch-size", type=int, default=defaults.batch_size, help="frames per detector batch")
    group.add_argument("--max-missed", type=int, default=defaults.max_missed,
                       help=f"frames a track survives without a face (default {defaults.max_missed})")
    group.add_argument("--min-track-frames", type=int, default=defaults.min_track_frames,
                       help=f"drop tracks with fewer faces than this (default {defaults.min_track_frames})")


def crop_options(args: argparse.Namespace):
    """CropOptions from the parsed detection arguments."""
    from affbench.video.options import CropOptions

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    return CropOptions(detector=args.detector, device=args.device or CropOptions().device, batch_size=args.batch_size,
                       max_missed=args.max_missed, min_track_frames=args.min_track_frames)


def run_crop(args: argparse.Namespace) -> int:
    from affbench.video.crop import crop_videos

    manifests = crop_videos(args.source, args.out, crop_options(args), quiet=args.quiet)
    for manifest in manifests:
        tracks = ", ".join(f"{t['name']} ({t['frames_with_face']} faces, frames {t['first_frame']}-"
                           f"{t['last_frame']})" for t in manifest["tracks"])
        print(f"{manifest['video']}: {manifest['frames']} frames, {manifest['alignment']['mode']} alignment: {tracks}")
    return 0


def add_crop_command(commands) -> None:
    """Add `crop` to the `data` command group."""
    crop = commands.add_parser(
        "crop", help="decode videos into aligned 112x112 face crops in the Aff-Wild2 layout",
        description="Decode a video (or every video of a folder), detect, track and align faces, and write "
                    "OUT/cropped_aligned/<track>/NNNNN.jpg (frames without a face get no image), an empty "
                    "annotation template per track and task, and a manifest. Needs the video extra.")
    crop.add_argument("source", type=Path, help="a video file, or a folder holding only video files")
    crop.add_argument("--out", type=Path, required=True, help="dataset root to write (created if missing)")
    add_detection_arguments(crop)
    add_quiet_argument(crop)
    crop.set_defaults(func=reporting_input_errors("affbench data crop", run_crop))


def add_predict_video_arguments(parser: argparse.ArgumentParser) -> None:
    """`--video FILE --run RUN_DIR` on `affbench predict`."""
    group = parser.add_argument_group("your own video (needs the video extra)")
    group.add_argument("--video", type=Path, default=None,
                       help="predict every frame of this video with --run's model: crops, CSV and plot in --out")
    group.add_argument("--run", type=Path, default=None, help="the trained run directory (or its best.pt)")
    add_detection_arguments(parser)


def run_predict_video(args: argparse.Namespace) -> int:
    """`affbench predict --video FILE --run RUN_DIR [--out DIR]`, errors reported as one line."""

    def run(args: argparse.Namespace) -> int:
        from affbench.video.predict import predict_video

        if args.run is None:
            raise ValueError("--video needs --run RUN_DIR (a trained run directory or its best.pt)")
        result = predict_video(args.video, args.run, out=args.out, options=crop_options(args),
                               smoothing=args.smoothing, quiet=args.quiet)
        print(f"predictions: {result['csv']}\nplot: {result['plot']}\ncrops: {result['crops']}")
        return 0

    return reporting_input_errors("affbench predict", run)(args)
