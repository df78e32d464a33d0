"""The learners of the coteach stage, one file each; this list is the only place that names them all.

Every learner trains ``--arch`` on the same device-resident batches with the same optimiser and
schedule as the CL paper's Co-Teaching (``pipeline.learners.training``); they differ only in how a batch
becomes a loss (``Spec.losses``).
"""

from pipeline.learners import coteaching, gce, mae, mixup, plain, sce

LEARNERS = (coteaching.SPEC, plain.SPEC, mixup.SPEC, sce.SPEC, mae.SPEC, gce.SPEC)
BY_NAME = {spec.name: spec for spec in LEARNERS}
