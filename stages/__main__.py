"""``python -m stages NAME [options]``: stage NAME of ``stages.NAMES``, as ``python -m stages.NAME`` runs it."""

import sys

from pipeline import workers
from stages import NAMES, registry

name = sys.argv[1] if len(sys.argv) > 1 else ""
if name not in NAMES:
    print(
        f"python -m stages: {name or 'no stage named'}: not a stage (choose from {', '.join(NAMES)})", file=sys.stderr
    )
    sys.exit(2)
sys.argv = [f"stages.{name}", *sys.argv[2:]]
workers.main(registry()[name])
