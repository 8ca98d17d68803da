"""``fastgan dataset --source DIR|ZIP --dest OUT.zip|DIR``: build a training dataset (NVlabs layout)."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("dataset", help="convert an image folder or zip into a training dataset (.zip or folder)")
    p.add_argument("--source", required=True, help="image folder (searched recursively) or .zip")
    p.add_argument("--dest", required=True, help="OUT.zip, or a new or empty folder")
    p.add_argument("--resolution", default=None, metavar="WxH",
                   help="output size, e.g. 256x256 (also 256,256 or 256); images are resized with Lanczos")
    p.add_argument("--transform", default=None, choices=["center-crop", "center-crop-wide"],
                   help="crop before resizing (needs --resolution)")
    p.add_argument("--max-images", type=int, default=None, metavar="N", help="read at most N input images")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..train.dataset_tool import convert_dataset

    report = convert_dataset(args.source, args.dest, resolution=args.resolution, transform=args.transform,
                             max_images=args.max_images)
    print(report.text(), end="")
    print(f"report: {report.report_path}")
    return 0
