"""coteach: Co-Teaching on the rows each CL method keeps (plus no-pruning and plain baselines), tested per epoch.

`--gpus 0,1,2,3` runs the (condition, method, seed) tasks on one worker process per GPU (`--gpus cpu`:
one CPU worker) instead of one after another on `--gpu`."""

from pipeline import cli, workers
from pipeline.coteach import STAGE


def parser():
    return workers.parser(__doc__, STAGE)


def run(args):
    workers.run(args, STAGE)


if __name__ == "__main__":
    cli.main(lambda: run(parser().parse_args()))
