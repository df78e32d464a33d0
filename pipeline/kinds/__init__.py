"""The kinds of condition, one file each; this list is the only place that names them all.

A kind says where a condition's labels come from (``sources``: the files whose checksums the labels
depend on), makes them in the dataset's row order (``labels``: the noisy labels, and the
generating noise matrix where there is one) and puts the condition in words (``describe``).
"""

from pipeline.kinds import annotators, cifar10n, generated, given, paper

KINDS = {
    "paper": paper.KIND,
    "generated": generated.KIND,
    "given": given.KIND,
    "cifar10n": cifar10n.KIND,
    "annotators": annotators.KIND,
}  # by Condition.kind
