"""combine: merge each condition's fold shards into psx.npy (every row covered exactly once)."""

from pipeline import cli, datasets, folds
from pipeline.crossval import CrossvalConfig


def run():
    p = cli.parser(__doc__)
    cli.add_condition_arg(p)
    p.add_argument("--folds", type=int, default=CrossvalConfig.folds)
    p.add_argument("--fold-seed", type=int, default=CrossvalConfig.fold_seed)
    args = p.parse_args()
    run = cli.run_dir(args)
    num_classes = datasets.cached(run.require(run.dataset, "data")).num_classes
    for cond in run.conditions(args.cond):
        out, did = folds.combine(run, cond, args.folds, args.fold_seed, num_classes, args.force)
        cli.log(f"{'wrote' if did else 'current'}: {out}")


if __name__ == "__main__":
    cli.main(run)
