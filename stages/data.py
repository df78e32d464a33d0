"""data: decode a dataset source into the run's uint8 cache (dataset.npz)."""

from pipeline import cli, datasets


def parser():
    p = cli.parser(__doc__)
    p.add_argument("--source", required=True,
                   help="ImageFolder root (or .tar.gz of one) with train/ and test/, a cifar-10-batches-py folder, or 'digits'")
    return p


def run(args):
    run = cli.run_dir(args, create=True)
    did = datasets.prepare(run, args.source, args.force)
    cli.log(f"{'wrote' if did else 'current'}: {run.dataset}")


if __name__ == "__main__":
    cli.main(lambda: run(parser().parse_args()))
