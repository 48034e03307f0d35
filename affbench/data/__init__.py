"""Data: records, readers, splits, windows and shards."""

# Names and defaults the command line shows in its help. They live here, in a module that imports nothing, so
# `affbench --help` never imports numpy or torch; the modules that use them import them from here.
TASKS = ("va", "expr", "au")  # the ABAW tasks (re-exported by affbench.data.affwild2_layout)
SPLITS = ("train", "validation")  # the annotated splits
MISSING_FACE_POLICIES = ("mask", "ffill", "zeros", "interpolate")  # affbench.data.missing_faces
DEFAULT_MISSING_FACE_POLICY = "mask"
# Samples per shard: 112x112 aligned faces are ~5 kB, so ~50 MB frame shards; 256 windows of [300, 768]
# float16 are ~118 MB, big sequential reads yet enough shards for ranks x workers.
FRAME_MAXCOUNT = 10000
WINDOW_MAXCOUNT = 256
