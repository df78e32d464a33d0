"""coteach: Co-Teaching on the rows each CL method keeps (plus no-pruning and plain baselines), tested per epoch."""

from pipeline import cli, coteach
from pipeline.store import load_json
from pipeline.train import pick_device


def run():
    p = cli.parser(__doc__)
    cli.add_condition_arg(p)
    p.add_argument("--methods", default="all", help=f"comma-separated, from {', '.join(coteach.METHODS)}, or all")
    p.add_argument("--seeds", type=cli.int_list, default=[0], help="comma-separated seeds (trials)")
    p.add_argument("--gpu", default="0", help="CUDA device index, or 'cpu' (without CUDA: the CPU)")
    cli.add_config_args(p, coteach.CoteachConfig)
    args = p.parse_args()
    run, config = cli.run_dir(args), cli.config_from(args, coteach.CoteachConfig)
    conds, methods = run.conditions(args.cond), coteach.parse_methods(args.methods)
    todo = coteach.pending(run, conds, methods, args.seeds, config, args.force)
    device = pick_device(args.gpu)
    cli.log(f"coteach: {len(todo)} of {len(conds) * len(methods) * len(args.seeds)} tasks to run on {device}")
    for i, (cond, method, seed) in enumerate(todo, 1):
        out = coteach.run_task(run, cond, method, seed, config, device, args.force)
        if out is None:
            continue
        m = load_json(out)
        cli.log(f"[{i}/{len(todo)}] {cond} {method} seed {seed}: final {100 * m['final_acc']:.1f}%  best {100 * m['best_acc']:.1f}%")


if __name__ == "__main__":
    cli.main(run)
