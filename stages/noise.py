"""noise: write the noisy labels of every condition (paper's, generated with cleanlab, or given)."""

from pathlib import Path

from pipeline import cli, conditions, datasets, store


def run():
    p = cli.parser(__doc__)
    p.add_argument("--conditions", default="",
                   help="'paper' (Table 2's 13), 'paper-all' (17), or NOISE:SPARSITY,... to generate with cleanlab")
    p.add_argument("--labels", action="append", default=[], metavar="NAME=FILE.npy",
                   help="a condition whose noisy labels are given (rows in dataset order); repeatable")
    p.add_argument("--paper-json", type=Path, default=None,
                   help="read paper conditions from the paper's JSON files in this folder instead of data/")
    p.add_argument("--seed", type=int, default=0, help="seed of generated noise")
    args = p.parse_args()
    run = cli.run_dir(args)
    ds = datasets.cached(run.require(run.dataset, "data"))
    conds = conditions.parse_conditions(args.conditions, ds.num_classes) if args.conditions else []
    conds += [conditions.from_npy(spec) for spec in args.labels]
    if not conds:
        raise store.PipelineError("give --conditions and/or --labels")
    for cond in conds:
        did = conditions.write_condition(run, cond, args.seed, args.paper_json, args.force)
        info = store.read_manifest(run.labels(cond.name))["info"]
        cli.log(f"{'wrote' if did else 'current'}: {run.labels(cond.name)}  noise={info['actual_noise_rate']:.3f}")
    names = [c.name for c in conds]
    if not run.conditions_list.exists() or store.load_json(run.conditions_list) != names:
        store.save_json(run.conditions_list, names)


if __name__ == "__main__":
    cli.main(run)
