#!/usr/bin/env python3
"""Reads tfr's TensorBoard event files with the `tensorboard` package's own reader.

Not run by `cargo test` (it needs `pip install tensorboard`). Usage:

    cargo run -p tfr-tf --example tf_interop -- OUT
    python3 scripts/check_tensorboard.py OUT/logs --expect-scalar loss --expect-histogram weights \
        --expect-image digit --expect-graph

or, in general,

    python3 scripts/check_tensorboard.py LOGDIR [--expect-scalar TAG] [--expect-histogram TAG]
        [--expect-image TAG] [--expect-graph]

Every event file in LOGDIR is read record by record with TensorBoard's TFRecord reader (which
checks the masked CRC32Cs) and decoded as `Event` protos; then TensorBoard's
`EventAccumulator` loads the directory the way the web UI does, and the script prints the tags
it found per plugin. It exits 1 when a file fails to parse or an expected tag is missing.
"""
import argparse
import glob
import os
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("logdir")
    ap.add_argument("--expect-scalar", action="append", default=[])
    ap.add_argument("--expect-histogram", action="append", default=[])
    ap.add_argument("--expect-image", action="append", default=[])
    ap.add_argument("--expect-graph", action="store_true")
    args = ap.parse_args()

    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.backend.event_processing import event_file_loader

    files = sorted(glob.glob(os.path.join(args.logdir, "*tfevents*")))
    if not files:
        print(f"no event files in {args.logdir}")
        return 1
    for path in files:
        # RawEventFileLoader reads the TFRecord framing (and its CRCs); EventFileLoader decodes.
        loader = event_file_loader.EventFileLoader(path)
        events = list(loader.Load())
        if not events:
            print(f"{path}: no events")
            return 1
        first = events[0]
        if first.file_version != "brain.Event:2":
            print(f"{path}: first event has file_version {first.file_version!r}")
            return 1
        print(f"{path}: {len(events)} events, file_version {first.file_version}")

    acc = event_accumulator.EventAccumulator(
        args.logdir,
        size_guidance={
            event_accumulator.SCALARS: 0,
            event_accumulator.HISTOGRAMS: 0,
            event_accumulator.IMAGES: 0,
        },
    )
    acc.Reload()
    tags = acc.Tags()
    print("tags:", {k: v for k, v in tags.items() if v})
    missing = []
    for tag in args.expect_scalar:
        if tag not in tags.get(event_accumulator.SCALARS, []):
            missing.append(f"scalar {tag}")
        else:
            values = acc.Scalars(tag)
            print(f"scalar {tag}: {len(values)} points, last step {values[-1].step} = {values[-1].value}")
    for tag in args.expect_histogram:
        if tag not in tags.get(event_accumulator.HISTOGRAMS, []):
            missing.append(f"histogram {tag}")
        else:
            h = acc.Histograms(tag)[-1]
            print(f"histogram {tag}: step {h.step}, num {h.histogram_value.num}")
    for tag in args.expect_image:
        if tag not in tags.get(event_accumulator.IMAGES, []):
            missing.append(f"image {tag}")
        else:
            img = acc.Images(tag)[-1]
            print(f"image {tag}: {img.width}x{img.height}, {len(img.encoded_image_string)} PNG bytes")
    if args.expect_graph:
        if not tags.get(event_accumulator.GRAPH):
            missing.append("graph")
        else:
            print(f"graph: {len(acc.Graph().node)} nodes")
    if missing:
        print("missing:", ", ".join(missing))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
