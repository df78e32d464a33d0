"""``make demo-own``: the whole path on a realistic "own dataset" that needs no download.

    python -m pipeline.demo_own build DIR    # DIR/images/*.png (mixed sizes), DIR/labels.csv (some labels wrong)
    python -m pipeline.demo_own check DIR RUN   # after the pipeline ran on it: the verdicts, and the flagged vs the flips

``build`` writes scikit-learn's 1,797 handwritten digits as grayscale PNGs of four sizes (8, 12, 16
and 24 px, as if from different scanners) with a CSV of ``path,label,split``: a stratified fifth is
the test split, labelled correctly (a carefully checked test set), and in the rest ``--flip`` of the
labels (default 10%) were changed to another digit, the way a training set with label errors looks.
The true labels are kept apart in ``DIR/truth.csv``, which the pipeline never reads: ``check`` uses
it only to say how many of the flagged images really were mislabelled.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np

from pipeline import cli, files, store
from pipeline.options import Range

SIZES = (8, 12, 16, 24)


def build(out: Path, flip: float = 0.1, seed: int = 0) -> Path:
    """Write the images, ``labels.csv`` and ``truth.csv`` under ``out``; returns the CSV's path."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    rng = np.random.default_rng(seed)
    true = digits.target.astype(int)
    _, test = train_test_split(np.arange(len(true)), test_size=0.2, random_state=seed, stratify=true)
    split = np.array(["train"] * len(true), dtype=object)
    split[test] = "test"
    given = true.copy()
    flipped = (rng.random(len(true)) < flip) & (split == "train")
    given[flipped] = (true[flipped] + rng.integers(1, 10, flipped.sum())) % 10
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows, truth = [], []
    for i, image in enumerate(digits.images):
        size = SIZES[rng.integers(len(SIZES))]
        pixels = Image.fromarray(np.round(image * 255 / 16).astype(np.uint8), "L")
        name = f"images/digit_{i:04d}.png"
        png = io.BytesIO()
        pixels.resize((size, size), Image.Resampling.BICUBIC).save(png, "PNG")
        files.save(out / name, png.getvalue())
        rows.append([name, given[i], split[i]])
        truth.append([name, true[i], split[i]])
    for file, body in (("labels.csv", rows), ("truth.csv", truth)):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "label", "split"])
        w.writerows(body)
        files.save(out / file, buf.getvalue().encode())
    train = split == "train"
    print(
        f"wrote {len(rows)} images of {', '.join(map(str, SIZES))} px and {out / 'labels.csv'}: {int(train.sum())} train "
        f"({int(flipped.sum())} labels wrong, {flipped.sum() / train.sum():.1%}), {int((~train).sum())} test (all correct)"
    )
    return out / "labels.csv"


def check(source: Path, run_dir: Path) -> None:
    """Print the report's "Does cleaning help?" table and how the flagged images compare with the flips."""
    from pipeline import datasets
    from pipeline.layout import RunDir

    run = RunDir(run_dir)
    made = store.verify(run.dataset)["config"]
    labels = str((source / "labels.csv").resolve())
    if made["source"] != labels or made["fingerprint"] != datasets.fingerprint(labels):
        raise store.PipelineError(
            f"{run.dataset}: made from {made['source']} as it was then, not from {labels} as it is "
            "now: rerun make demo-own"
        )
    read = lambda f: {r["path"]: r["label"] for r in csv.DictReader(open(source / f, newline="", encoding="utf-8"))}
    given, truth = read("labels.csv"), read("truth.csv")
    if given.keys() != truth.keys():
        raise store.PipelineError(
            f"{source / 'truth.csv'}: not the same images as {source / 'labels.csv'}: rerun make demo-own"
        )
    wrong = {p for p in given if given[p] != truth[p]}
    for cond in sorted(p.name for p in (run.root / "conditions").iterdir() if p.is_dir()):
        issues = list(csv.DictReader(io.StringIO(store.read(run.label_issues(cond)).decode())))
        hits = sum(r["id"] in wrong for r in issues)
        top = issues[:40]
        print(
            f"{cond}: {len(issues)} images flagged by a CL method, {hits} of them mislabelled in the CSV "
            f"({hits / max(1, len(issues)):.0%}); {hits} of the {len(wrong)} wrong labels found ({hits / max(1, len(wrong)):.0%}). "
            f"The gallery's {len(top)}: {sum(r['id'] in wrong for r in top)} mislabelled."
        )
        page = run.label_issues(cond).with_suffix(".html")
        print(
            f"{cond}: review page {page} ({store.verify(page)['info']['cards']} cards): open it, mark each card keep, "
            "relabel or drop, export the decisions, and read them back with noise --labels"
        )
    table = (run.report_dir / "table.md").read_text()
    start = table.find("## Does cleaning help?")
    print(
        table[start:].split("\n## ")[0]
        if start >= 0
        else "no 'Does cleaning help?' table in the report (make coteach SEEDS=...)"
    )


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the demo dataset")
    b.add_argument("dir", type=Path)
    b.add_argument(
        "--flip",
        type=Range(float, 0, 1, hi_open=True),
        default=0.1,
        help="fraction of the training labels made wrong (default: 0.1)",
    )
    c = sub.add_parser("check", help="after the pipeline: verdicts, and the flagged images against the flips")
    c.add_argument("dir", type=Path)
    c.add_argument("run", type=Path)
    return p


def main() -> None:
    args = parser().parse_args()
    if args.command == "build":
        build(args.dir, args.flip)
    else:
        check(args.dir, args.run)


if __name__ == "__main__":
    cli.main(main)
