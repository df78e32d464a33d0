"""combine: merge each condition's fold shards into psx.npy (every row covered exactly once). The fold
count and the crossval config come from the shards, which must agree."""

from pipeline import cli, conditions, folds


def parser():
    p = cli.parser(__doc__)
    cli.add_condition_arg(p)
    return p


def run(args):
    run = cli.run_dir(args)
    for cond in conditions.names(run, args.cond):
        did = folds.combine(run, cond, args.force)
        cli.log(f"{did.value}: {run.psx(cond)}")


if __name__ == "__main__":
    cli.main(lambda: run(parser().parse_args()))
