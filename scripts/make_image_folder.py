"""Write CIFAR-10 test images from the shared data folder as an image-folder tree, for the fine-tuning guide.

    python scripts/make_image_folder.py example --classes cat dog ship --per-class 60 --val 20
    # -> example/train/<class>/*.png and example/val/<class>/*.png (disjoint)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from zoo import datasets

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    parser.add_argument("--classes", nargs="+", default=["cat", "dog", "ship"], choices=CLASSES)
    parser.add_argument("--per-class", type=int, default=60, help="training images per class")
    parser.add_argument("--val", type=int, default=20, help="validation images per class")
    args = parser.parse_args()
    images, labels = datasets.cifar10()
    for name in args.classes:
        index = (labels == CLASSES.index(name)).nonzero().flatten().tolist()
        if len(index) < args.per_class + args.val:
            raise SystemExit(f"only {len(index)} {name} images, {args.per_class + args.val} asked for")
        for split, chosen in (("train", index[:args.per_class]), ("val", index[args.per_class:][:args.val])):
            folder = args.output / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                Image.fromarray(images[i].permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.png")
    print(f"wrote {args.output}/train and {args.output}/val for {', '.join(args.classes)}")


if __name__ == "__main__":
    main()
