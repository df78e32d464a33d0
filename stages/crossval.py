"""crossval: train one cross-validation fold per condition; write its held-out probabilities as a shard.

`--fold 0` runs fold 0 of every condition whose shard is missing or stale, one after another in this
process; `--fold all` runs every fold. `--gpus 0,1,2,3` runs them on one worker process per GPU instead
(`--gpus cpu`: one CPU worker)."""

from pipeline import cli, workers
from pipeline.crossval import STAGE


def parser():
    return workers.parser(__doc__, STAGE)


def run(args):
    workers.run(args, STAGE)


if __name__ == "__main__":
    cli.main(lambda: run(parser().parse_args()))
