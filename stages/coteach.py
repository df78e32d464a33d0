"""coteach: Co-Teaching on the rows each CL method keeps (plus no-pruning and plain baselines), tested per epoch.

`--gpus 0,1,2,3` runs the (condition, method, seed) tasks on one worker process per GPU (`--gpus cpu`:
one CPU worker) instead of one after another on `--gpu`."""

from pipeline import cli, tasks, workers


def run():
    p = cli.parser(__doc__)
    tasks.add_args(p, "coteach")
    workers.add_device_args(p)
    args = p.parse_args()
    plan = tasks.plan(args, "coteach")
    if args.gpus:
        workers.run_stage(plan, args.gpus)
    else:
        tasks.run_here(plan, args.gpu)


if __name__ == "__main__":
    cli.main(run)
