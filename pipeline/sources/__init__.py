"""The data sources, one file each; this list is the only place that names them all. The first that
claims an existing path reads it (the ImageFolder claims whatever the others do not); ``digits`` is
named, not found on disk."""

from pipeline.sources import cifar_batches, csv_file, digits, imagefolder

NAMED = {digits.NAME: digits.SOURCE}
ON_DISK = (cifar_batches.SOURCE, csv_file.SOURCE, imagefolder.SOURCE)
