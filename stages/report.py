"""report: Table 2 (test accuracy per CL method and condition) and label-error detection quality."""

from pipeline import cli, report


def run():
    p = cli.parser(__doc__)
    cli.add_condition_arg(p)
    args = p.parse_args()
    run = cli.run_dir(args)
    folder, text = report.write(run, run.conditions(args.cond))
    cli.log(text)
    cli.log(f"wrote: {folder}/table.md, {folder}/table.csv")


if __name__ == "__main__":
    cli.main(run)
