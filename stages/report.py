"""report: our test accuracy per (rows, learner) beside the CL paper's Table 2 (final and best epoch, mean ± std over seeds),
label-error detection on this run's psx and on the paper's (made by masks), and plots (report/*.md, *.csv, *.png). Only
results whose whole chain of artifacts is current are shown; stale ones are listed."""

from pipeline import cli, conditions, options, report
from pipeline.coteach import SEEDS


def parser():
    p = cli.parser(__doc__)
    cli.add_condition_arg(p)
    p.add_argument("--seeds", default="", help="comma-separated seeds (trials) to aggregate (default: every seed found)")
    p.add_argument("--paper-table", choices=tuple(report.PAPER_TABLES), default="published",
                   help="the paper's cells to compare with: published (its Table 2, default) or trial1 (trial 1 of 10 "
                        "of its Co-Teaching runs)")
    return p


def run(args):
    run = cli.run_dir(args)
    seeds = options.int_list(args.seeds, SEEDS, "--seeds") if args.seeds else None
    files, text = report.write(run, conditions.names(run, args.cond), seeds, args.paper_table)
    cli.log(text)
    cli.log("wrote: " + ", ".join(str(f) for f in files))


if __name__ == "__main__":
    cli.main(lambda: run(parser().parse_args()))
