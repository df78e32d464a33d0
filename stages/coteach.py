"""coteach: Co-Teaching on the rows each CL method keeps (plus no-pruning and plain baselines), tested per epoch.

`--gpus 0,1,2,3` runs the (condition, method, seed) tasks on one worker process per GPU (`--gpus cpu`:
one CPU worker) instead of one after another on `--gpu`."""

from pipeline import cli, workers

if __name__ == "__main__":
    cli.main(lambda: workers.main(__doc__, "coteach"))
