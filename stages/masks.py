"""masks: label-error masks of the five CL methods (cleanlab) for every condition, with detection quality."""

from pathlib import Path

from pipeline import cli, conditions, masks, store


def parser():
    p = cli.parser(__doc__)
    cli.add_condition_arg(p)
    p.add_argument("--psx", type=Path, default=None,
                   help="use these probabilities instead of the run's psx.npy: a .npy (rows in dataset order; "
                        "with --cond naming one condition) or a folder of the paper's *_psx.npy files")
    return p


def run(args):
    run = cli.run_dir(args)
    conds = conditions.names(run, args.cond)
    if args.psx is not None and args.psx.is_file() and len(conds) != 1:
        raise store.PipelineError(f"--psx {args.psx} is one file: name one condition with --cond")
    for cond in conds:
        made = masks.run_masks(run, cond, masks.resolve_psx(args.psx, run, cond), args.force)
        for method, path in masks.mask_paths(run, cond).items():
            d = store.verify(path)["info"]["detection"]
            f1 = "-" if d["f1"] is None else f"{d['f1']:.3f}"
            cli.log(f"{'wrote' if made[method] else 'current'}: {path}  keep {d['keep_fraction']:.3f}  F1 {f1}")
        if run.old_masks(cond).exists():
            cli.log(f"note: {run.old_masks(cond)} holds the masks of the layout before one file per method; nothing "
                    "reads it now (coteach results made from it are stale: make coteach retrains them); remove it")


if __name__ == "__main__":
    cli.main(lambda: run(parser().parse_args()))
