"""masks: label-error masks of the five CL methods (cleanlab) for every condition, with detection quality;
for conditions with the CL paper's labels also the five methods' detection on the paper's own psx."""

from pathlib import Path

from pipeline import cli, conditions, masks, store


def parser():
    p = cli.parser(__doc__)
    cli.add_condition_arg(p)
    p.add_argument("--psx", type=Path, default=None,
                   help="use these probabilities instead of the run's psx.npy: a .npy (rows in dataset order; "
                        "with --cond naming one condition) or a folder of the paper's *_psx.npy files")
    p.add_argument("--paper-psx", type=Path, default=masks.PAPER_PSX,
                   help="folder of the paper's *_psx.npy files: detection on them for conditions with the paper's "
                        "labels, beside ours in the report (skipped when absent)")
    return p


def run(args):
    run = cli.run_dir(args)
    conds = conditions.names(run, args.cond)
    if args.psx is not None and args.psx.is_file() and len(conds) != 1:
        raise store.PipelineError(f"--psx {args.psx} is one file: name one condition with --cond")
    for cond in conds:
        if (made := masks.run_paper_detection(run, cond, args.paper_psx, args.force)) is not None:
            cli.log(f"{made.value}: {run.paper_detection(cond)} (on the paper's psx)")
        made = masks.run_masks(run, cond, masks.resolve_psx(args.psx, run, cond), args.force)
        for method, path in masks.mask_paths(run, cond).items():
            d = store.verify(path)["info"]["detection"]
            f1 = "-" if d["f1"] is None else f"{d['f1']:.3f}"
            cli.log(f"{made[method].value}: {path}  keep {d['keep_fraction']:.3f}  F1 {f1}")
        if run.old_masks(cond).exists():
            cli.log(f"note: {run.old_masks(cond)} holds the masks of the layout before one file per method; nothing "
                    "reads it now (coteach results made from it are stale: make coteach retrains them); remove it")


if __name__ == "__main__":
    cli.main(lambda: run(parser().parse_args()))
