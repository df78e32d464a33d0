"""crossval: train one cross-validation fold per condition; write its held-out probabilities as a shard.

`--fold 0` runs fold 0 of every condition whose shard is missing or stale, one after another in this
process; `--fold all` runs every fold."""

from pipeline import cli, crossval
from pipeline.store import PipelineError
from pipeline.train import pick_device


def run():
    p = cli.parser(__doc__)
    p.add_argument("--fold", default="all", help="fold index, comma-separated indices, or 'all'")
    p.add_argument("--gpu", default="0", help="CUDA device index, or 'cpu' (without CUDA: the CPU)")
    cli.add_condition_arg(p)
    cli.add_config_args(p, crossval.CrossvalConfig)
    args = p.parse_args()
    run, config = cli.run_dir(args), cli.config_from(args, crossval.CrossvalConfig)
    folds = list(range(config.folds)) if args.fold == "all" else cli.int_list(args.fold)
    bad = [k for k in folds if not 0 <= k < config.folds]
    if bad:
        raise PipelineError(f"--fold {bad[0]}: folds are 0..{config.folds - 1}")
    conds = run.conditions(args.cond)
    todo = crossval.pending(run, conds, folds, config, args.force)
    device = pick_device(args.gpu)
    cli.log(f"crossval: {len(todo)} of {len(conds) * len(folds)} (condition, fold) tasks to run on {device}")
    for i, (cond, fold) in enumerate(todo, 1):
        out = crossval.run_fold(run, cond, fold, config, device, args.force)
        if out is not None:
            cli.log(f"[{i}/{len(todo)}] wrote {out}")


if __name__ == "__main__":
    cli.main(run)
