"""Our worker pools (pipeline.pools): a stage never hangs on its own pool, a run that succeeds prints no
traceback, and a stop of the stage ends every worker (issue 40, rule 1)."""

import os
import signal
import subprocess
import sys
import time

from conftest import ROOT

# A stage's process as ``cli.main`` sets it up (its SIGTERM handler raises Stopped), decoding PNGs with two forked
# workers: ``RUNS`` decodes one after another (the hang was 1 run in 40, the traceback 1 in 2), each ending its pool.
SCRIPT = """
import io, sys, tempfile
from pathlib import Path
import numpy as np
from PIL import Image
from pipeline import cli
from pipeline.sources.base import Decoder, decode

def png(i):
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), i % 256, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()

def main():
    runs, delay = int(sys.argv[1]), float(sys.argv[2])
    data = [png(i) for i in range(700)]
    def read(i):
        if delay:
            import time; time.sleep(delay)
        return data[i]
    items = [(f"{i}.png", lambda i=i: read(i)) for i in range(len(data))]
    for _ in range(runs):
        staging = Path(tempfile.mkdtemp(dir=sys.argv[3]))  # the memory-mapped file the workers decode into
        images = decode(items, Decoder(None, None, staging, workers=2), "train").images
        assert [int(images[i, 0, 0, 0]) for i in (0, 255, 699)] == [0, 255, 699 % 256]

cli.main(main)
"""


def test_a_pool_ends_cleanly_run_after_run(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, "40", "0", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )  # a hang fails here (each run takes well under a second)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and "Traceback" not in proc.stdout
    assert proc.stdout.count("decode train: 700/700 images") == 40


def test_a_stopped_stage_ends_every_worker_in_one_line(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, "1", "0.02", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    workers: list[int] = []
    for _ in range(600):  # until both workers are decoding
        out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        workers = [int(p) for p in out]
        if len(workers) == 2:
            break
        time.sleep(0.1)
    assert len(workers) == 2
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines() == ["stopped by a signal; the last epoch's checkpoint is kept: rerun to resume"]
    assert "Traceback" not in stdout
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split()[2]
