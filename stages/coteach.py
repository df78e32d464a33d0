"""coteach: learners (pipeline/learners/, see --learners) on the rows each CL method keeps, or on
all rows; test accuracy after every epoch. Default grid: the CL paper's Table 2 (see --learners).

`--gpus 0,1,2,3` runs the (condition, rows, learner, seed) tasks on one worker process per GPU (`--gpus cpu`:
one CPU worker) instead of one after another on `--gpu`."""

from pipeline import cli, workers
from pipeline.coteach import STAGE


def parser():
    return workers.parser(__doc__, STAGE)


def run(args):
    workers.run(args, STAGE)


if __name__ == "__main__":
    cli.main(lambda: run(parser().parse_args()))
