"""data: decode a dataset source into the run's uint8 cache (dataset.npz)."""

from pipeline import cli, datasets, store
from pipeline.options import Range


def parser():
    p = cli.parser(__doc__)
    p.add_argument("--source", required=True,
                   help="an ImageFolder root (or .tar.gz of one): train/ and test/ of class folders, or class folders "
                        "alone; a CSV of path,label[,split]; a cifar-10-batches-py folder; or 'digits'")
    p.add_argument("--image-size", type=Range(int, 1, 4096, optional=True), default=None,
                   help="resize every image (antialiased) to N x N; none: keep the size, which all images must share "
                        "(refused for digits and cifar-10-batches-py, which have one size)")
    p.add_argument("--test-fraction", type=Range(float, 0, 1, lo_open=True, hi_open=True, optional=True), default=None,
                   help="held out as the test set, stratified by class, for a source without a train/test split "
                        f"(none: {datasets.TEST_FRACTION}); refused for a source with one")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave out unusable rows (unreadable or missing image, duplicate path, unknown class, ...) and "
                        "count them in the manifest, instead of stopping at the first")
    return p


def run(args):
    run = cli.run_dir(args, create=True)
    did = datasets.prepare(run, args.source, args.force, args.image_size, args.test_fraction, args.skip_bad)
    info = store.verify(run.dataset)["info"]
    skipped = f"; {info['skipped']} unusable row(s) left out (first: {info['skipped_first'][0]})" if info.get("skipped") else ""
    cli.log(f"{did.value}: {run.dataset}  {info['n_train']} train / {info['n_test']} test, "
            f"{len(info['classes'])} classes, images {'x'.join(map(str, info['image_shape']))}{skipped}")


if __name__ == "__main__":
    cli.main(lambda: run(parser().parse_args()))
