"""review: the label issues to look at, per condition: label_issues.csv (every example a CL method flags,
ranked by cleanlab's label quality score, with the given and suggested label) and label_issues.png (a
gallery of the first --top of them, "given -> suggested" under each; --by-class: one per given class)."""

from pipeline import cli, conditions, review
from pipeline.options import Range


def parser():
    p = cli.parser(__doc__)
    cli.add_condition_arg(p)
    p.add_argument("--top", type=Range(int, 1, 10_000), default=40, help="images in each gallery, lowest label quality first")
    p.add_argument("--by-class", action="store_true", help="also one gallery per given class: label_issues/<k>_<class>.png")
    return p


def run(args):
    run = cli.run_dir(args)
    for cond in conditions.names(run, args.cond):
        files = review.run_review(run, cond, args.top, args.by_class, args.force)
        with open(files[0]) as f:
            flagged = sum(1 for _ in f) - 1
        cli.log(f"{cond}: {flagged} label issues: {files[0]}, gallery {files[1]}"
                + (f" (+{len(files) - 2} per class)" if len(files) > 2 else ""))


if __name__ == "__main__":
    cli.main(lambda: run(parser().parse_args()))
