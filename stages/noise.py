"""noise: add or update conditions (the paper's noisy labels, generated with cleanlab, CIFAR-10N's human labels,
or given) in the
run's registry, conditions.json, writing each one's labels; --remove drops one from the registry."""

from pathlib import Path

from pipeline import cli, conditions, store
from pipeline.options import SEED_MAX, Range


def parser():
    p = cli.parser(__doc__)
    p.add_argument("--conditions", default="",
                   help="'paper' (Table 2's 13), 'paper-all' (17), or NOISE:SPARSITY,... to generate with cleanlab")
    p.add_argument("--labels", action="append", default=[], metavar="NAME=FILE.npy",
                   help="a condition whose noisy labels are given (rows in dataset order); repeatable")
    p.add_argument("--cifar10n", default=None, metavar="CIFAR-10_human.pt",
                   help="add CIFAR-10N's real human labels (c10n_aggre, c10n_random1..3, c10n_worse) from its official "
                        "file (github.com/UCSC-REAL/cifar-10-100n); needs CIFAR-10's own training set as the data")
    p.add_argument("--remove", action="append", default=[], metavar="NAME",
                   help="drop this condition from the registry (its files stay on disk); repeatable")
    p.add_argument("--paper-json", type=Path, default=None,
                   help="read paper conditions from the paper's JSON files in this folder instead of data/")
    p.add_argument("--seed", type=Range(int, 0, SEED_MAX), default=0, help="seed of generated noise")
    return p


def run(args):
    run = cli.run_dir(args)
    if not (args.conditions or args.labels or args.cifar10n or args.remove):
        raise store.PipelineError("give --conditions, --labels, --cifar10n and/or --remove")
    info = store.verify(run.require(run.dataset, "data"))["info"]
    add = conditions.parse_conditions(args.conditions, len(info["classes"]), args.seed) if args.conditions else []
    add += [conditions.from_npy(spec) for spec in args.labels]
    add += conditions.from_cifar10n(args.cifar10n) if args.cifar10n else []
    for cond, did in conditions.update(run, add, args.remove, args.paper_json, args.force):
        rate = store.verify(run.labels(cond.name))["info"]["actual_noise_rate"]
        cli.log(f"{did.value}: {run.labels(cond.name)}  noise={rate:.3f}")
    for name in args.remove:
        cli.log(f"removed {name} from {run.registry} (its files in {run.condition_dir(name)} are kept)")
    cli.log(f"conditions: {', '.join(conditions.registry(run)) or 'none'}")


if __name__ == "__main__":
    cli.main(lambda: run(parser().parse_args()))
