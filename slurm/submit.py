"""Submit a stage's pending tasks to SLURM as ONE array job, through submitit.

    python -m slurm.submit crossval --run-dir RUN [--cond ...] [--fold all] [training options] [SLURM options]
    python -m slurm.submit coteach  --run-dir RUN [--methods all] [--learners paper] [--seeds 0,1,2] [training options] [SLURM options]
    python -m slurm.submit combine|masks|review --run-dir RUN [--cond ...] [stage options] [SLURM options]

One array element per pending task: a (condition, fold) or (condition, rows, learner, seed) of a
training stage, whose current artifacts are not submitted (nothing pending: nothing submitted), or a
condition of combine, masks or review (each element says whether it wrote or found its files current). The task list is
written to RUN/slurm/<job name>-tasks.json first (array index = position in it); logs go to
RUN/slurm/logs/<array id>_<index>/. Each element gets --gpus-per-task GPUs (0: it runs on the CPU; the
default for a stage that trains nothing).
On SIGUSR1 (sent --signal-delay seconds before the time limit, or by `scancel --signal=USR1`)
an element is requeued and resumes from its last epoch's checkpoint. `--wait` waits for the
array and fails if any task failed; otherwise run the next stage once `squeue` shows it done.
`--tasks-only` writes the task list and prints the `sbatch` command for slurm/array.sbatch (one template for every stage).
"""

from __future__ import annotations

import argparse
import pickle
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import stages
from pipeline import cli, signals, tasks, workers
from pipeline.errors import PipelineError
from pipeline.options import Range
from stages import tasklist

ROOT = Path(__file__).resolve().parent.parent
PREEMPT_SIGNAL = "USR1"  # SLURM's usual warning signal; pipeline.train stops on it too outside submitit


def minutes(spec: str) -> int:
    """SLURM time: MINUTES, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS -> whole minutes (at least 1)."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", spec.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"--time {spec!r}: expected minutes or [D-]HH:MM[:SS]")
    d, a, b, c = (int(x) if x else 0 for x in m.groups())
    if m.group(1):  # D-HH[:MM[:SS]]
        secs = d * 86400 + a * 3600 + b * 60 + c
    elif m.group(4):  # HH:MM:SS
        secs = a * 3600 + b * 60 + c
    elif m.group(3):  # MM:SS
        secs = a * 60 + b
    else:
        secs = a * 60
    return max(1, -(-secs // 60))


def extra_param(spec: str) -> tuple[str, object]:
    """'qos=high' or '--qos=high' -> ('qos', 'high'); 'exclusive' -> ('exclusive', True)."""
    key, eq, value = spec.lstrip("-").partition("=")
    if not key:
        raise argparse.ArgumentTypeError(f"--extra {spec!r}: expected an sbatch flag such as qos=high or --exclusive")
    return key, (value if eq else True)


def memory(spec: str) -> str:
    """SLURM memory: a whole number with an optional unit K, M, G or T."""
    if not re.fullmatch(r"[1-9]\d*[KMGT]?", spec.strip()):
        raise argparse.ArgumentTypeError(f"{spec!r}: expected a size such as 32G or 16000M")
    return spec.strip()


def job_name(spec: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", spec):
        raise argparse.ArgumentTypeError(f"{spec!r}: use letters, digits, '_', '-' and '.'")
    return spec


def add_slurm_args(p: argparse.ArgumentParser, stage: tasks.Stage) -> None:
    g = p.add_argument_group("SLURM")
    g.add_argument("--partition", help="sbatch --partition")
    g.add_argument("--account", help="sbatch --account")
    g.add_argument(
        "--time", type=minutes, default=minutes("4:00:00"), help="time limit per task: minutes or [D-]HH:MM[:SS]"
    )
    g.add_argument(
        "--gpus-per-task",
        type=Range(int, 0, 64),
        default=int(stage.device),
        help="GPUs per task (0: the task runs on the CPU; a stage that trains nothing needs none); crossval "
        "trains a fold on all of them (Lightning DDP, each GPU its share of every batch)",
    )
    g.add_argument(
        "--cpus-per-task", type=Range(int, 1, 1024), default=4, help="CPUs per task (also the task's torch threads)"
    )
    g.add_argument("--mem", type=memory, help="memory per task, e.g. 32G (unset: the cluster's default)")
    g.add_argument(
        "--array-parallelism",
        type=Range(int, 1, 100_000),
        default=256,
        help="at most this many tasks at once (--array=...%%N)",
    )
    g.add_argument(
        "--signal-delay",
        type=Range(int, 0, 3600),
        default=120,
        help=f"send SIG{PREEMPT_SIGNAL} this many seconds before the time limit",
    )
    g.add_argument(
        "--max-timeouts",
        type=Range(int, 0, 1000),
        default=3,
        help="requeue a task after at most this many time-outs (preemptions do not count)",
    )
    g.add_argument(
        "--extra",
        type=extra_param,
        action="append",
        default=[],
        metavar="FLAG",
        help="another sbatch flag, repeatable: --extra qos=high --extra=--exclusive",
    )
    g.add_argument("--job-name", type=job_name, help="default: cl-<stage>")
    g.add_argument("--wait", action="store_true", help="wait for the array to finish; exit status 2 if a task failed")
    g.add_argument("--poll", type=Range(float, 0.1, 3600), default=10.0, help="seconds between checks while waiting")
    g.add_argument(
        "--tasks-only", action="store_true", help="write the task list and print the sbatch command; submit nothing"
    )


def parser() -> argparse.ArgumentParser:
    p = cli.Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="stage", required=True)
    for stage in stages.arrays().values():
        s = sub.add_parser(
            stage.name,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
            help=f"one array element per pending {stage.unit} task",
        )
        s.add_argument("--run-dir", default=cli.DEFAULT_RUN_DIR, help="the run directory holding every artifact")
        s.add_argument("--force", action="store_true", help="redo tasks even where current artifacts exist")
        workers.add_options(s, stage, launch=("max_tasks",))
        add_slurm_args(s, stage)
    return p


def sbatch_flags(args, n: int, name: str) -> dict[str, object]:
    """The sbatch flags (without the dashes) that both submitit and --tasks-only use."""
    flags: dict[str, object] = {
        "job-name": name,
        "time": args.time,
        "cpus-per-task": args.cpus_per_task,
        "array": f"0-{n - 1}%{min(n, args.array_parallelism)}",
        "signal": f"{PREEMPT_SIGNAL}@{args.signal_delay}",
        "requeue": True,
    }
    for key, value in (("partition", args.partition), ("account", args.account), ("mem", args.mem)):
        if value:
            flags[key] = value
    if args.gpus_per_task > 0:
        flags["gpus-per-task"] = args.gpus_per_task
    flags.update((k.replace("_", "-"), v) for k, v in args.extra)
    return flags


def submit(plan: tasks.Plan, listing: Path, args, name: str):
    """One submitit array (map_array) of ``slurm.task.Task`` over the task list's entries."""
    import submitit

    from slurm.task import Task

    spec = tasklist.load(listing)
    flags = sbatch_flags(args, len(plan.tasks), name)
    named = ("partition", "account", "mem", "gpus-per-task")
    executor = submitit.AutoExecutor(
        folder=plan.run.root / "slurm" / "logs" / "%j", cluster="slurm", slurm_max_num_timeout=args.max_timeouts
    )
    executor.update_parameters(
        name=name,
        timeout_min=args.time,
        cpus_per_task=args.cpus_per_task,
        tasks_per_node=1,
        nodes=1,
        slurm_array_parallelism=args.array_parallelism,
        slurm_signal_delay_s=args.signal_delay,
        slurm_setup=[
            f"export SUBMITIT_PREEMPT_SIGNAL={PREEMPT_SIGNAL}",  # submitit's requeue handler listens to it
            f"export PYTHONPATH={shlex.quote(str(ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}",
        ],
        slurm_additional_parameters={
            k: v for k, v in flags.items() if k not in (*named, "job-name", "time", "cpus-per-task", "array")
        },
        **{f"slurm_{k.replace('-', '_')}": flags[k] for k in named if k in flags},
    )
    try:
        entries = [tasklist.entry(spec, i) for i in range(len(plan.tasks))]
        return executor.map_array(Task(), entries), entries
    except Exception as e:  # sbatch refused: say why in one message
        raise PipelineError(f"sbatch failed: {getattr(e, 'stderr', None) or e}") from None


ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "TIMEOUT"}
SETTLE_S = (
    30  # an element seen ended (or gone) without a result this long is failed: requeues and slow disks settle first
)


def states(array_id: str) -> dict[str, str] | None:
    """The state of every array element SLURM still knows ('<id>_<index>' -> 'RUNNING', 'COMPLETED', ...),
    finished ones included (``squeue -t all``); None when squeue fails."""
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-t", "all", "-j", array_id, "-o", "%i %T"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return {} if "Invalid job id" in out.stderr else None
    return dict(line.split(None, 1) for line in out.stdout.splitlines() if len(line.split()) == 2)


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain values only (tuples, strings, None ...): any global, hence any code, is refused."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: a result holds plain values only")


def read_result(path: Path) -> tuple[bool, str | None]:
    """(succeeded, value or the error's text) of an element's submitit result file (``("success", value)``
    or ``("error", traceback)``), read without running code: a run directory on shared scratch space may
    hold a planted one."""
    try:
        with open(path, "rb") as f:
            outcome = _PlainUnpickler(f).load()
    except Exception as e:  # noqa: BLE001 - truncated, garbage or a crafted file: a failure, said in one line
        return False, f"unreadable result file {path} ({type(e).__name__}: {str(e)[:120]})"
    if not (isinstance(outcome, tuple) and len(outcome) == 2 and outcome[0] in ("success", "error")):
        return False, f"unexpected result file {path}"
    if outcome[0] == "error":
        raised = [ln for ln in str(outcome[1]).splitlines() if re.match(r"[\w.]+(Error|Exception)\b", ln)]
        return False, raised[-1] if raised else "failed"
    return True, outcome[1]


def wait(jobs, entries: list[dict], array_id: str, poll: float) -> tuple[list[str], list[int]]:
    """Wait until every element has a result, or has ended (or left SLURM's memory) without one for
    SETTLE_S: (one line per failed element, the indices of those skipped because another process held
    their task). Reads submitit's result files and ``squeue``, not ``sacct``,
    so it works without SLURM accounting; a requeued element is pending again, not ended."""
    left, failed, skipped, ended_since = (
        {j.job_id: (i, j, e) for i, (j, e) in enumerate(zip(jobs, entries))},
        [],
        [],
        {},
    )
    while left:
        known = states(array_id)
        for jid, (i, job, entry) in list(left.items()):
            what = tasklist.describe(entry)  # from our own task list, not submitit's pickles
            if job.paths.result_pickle.exists():
                del left[jid]
                ok, out = read_result(job.paths.result_pickle)
                if ok:
                    cli.log(f"{jid}: {what}: {'done' if out else 'skipped (another process held it)'}")
                    if not out:
                        skipped.append(i)
                else:
                    failed.append(f"{jid} ({what}): {out}; log {job.paths.stderr}")
                    cli.log(f"{jid}: {what}: FAILED")
            elif known is not None and known.get(jid, "GONE") in ENDED | {"GONE"}:
                ended_since.setdefault(jid, time.monotonic())
                if time.monotonic() - ended_since[jid] >= SETTLE_S:
                    del left[jid]
                    state = known.get(jid, "gone from the queue")
                    failed.append(f"{jid} ({what}): ended without a result ({state}); log {job.paths.stdout}")
                    cli.log(f"{jid}: {what}: ended without a result ({state})")
            elif known is not None:
                ended_since.pop(jid, None)
        if left:
            time.sleep(poll)
    return failed, skipped


def run(args):
    stage = stages.arrays()[args.stage]
    select, config, launch = (cli.fields_from(args, cls) for cls, _ in workers.option_classes(stage))
    plan = tasks.plan(stage, cli.run_dir(args.run_dir), select, config, args.force, launch.max_tasks)
    name = args.job_name or f"cl-{stage.name}"
    slurm_dir = plan.run.root / "slurm"
    # A task of a stage that trains on several devices (crossval) trains on all its GPUs, as DDP ranks.
    gpu = (
        ",".join(map(str, range(args.gpus_per_task if stage.several_devices else 1)))
        if args.gpus_per_task > 0
        else "cpu"
    )
    if not plan.tasks:
        cli.log(f"{stage.name}: nothing to submit: all {plan.total} {stage.unit} tasks are current")
        return
    listing = tasklist.save(slurm_dir / f"{name}-tasks.json", plan, gpu)
    (slurm_dir / "logs").mkdir(parents=True, exist_ok=True)
    cli.log(f"{stage.name}: {len(plan.tasks)} of {plan.total} {stage.unit} tasks pending; task list {listing}")
    if args.tasks_only:
        flags = sbatch_flags(args, len(plan.tasks), name)
        flags.update(
            {
                "output": str(slurm_dir / "logs" / "%A_%a.out"),
                "open-mode": "append",
                "gpus-per-task": args.gpus_per_task,  # 0 overrides the template's default of 1
                "signal": f"B:{PREEMPT_SIGNAL}@{args.signal_delay}",  # the template's shell traps it
                "export": f"ALL,TASKS={listing}",
            }
        )
        cmd = [
            "sbatch",
            *(f"--{k}" if v is True else f"--{k}={v}" for k, v in flags.items()),
            str(ROOT / "slurm" / "array.sbatch"),
        ]
        cli.log("submit it with:\n  " + shlex.join(cmd))
        return
    if shutil.which("sbatch") is None:
        raise PipelineError(
            "sbatch not found: run this on a SLURM login node (or start one here: slurm/local-cluster.sh start)"
        )
    jobs, entries = submit(plan, listing, args, name)
    array_id = jobs[0].job_id.split("_")[0]
    kind = "array job" if len(jobs) > 1 else "job"  # submitit submits a single task as a plain job
    log = str(jobs[0].paths.stdout).replace(jobs[0].job_id, f"{array_id}_<index>" if len(jobs) > 1 else array_id)
    cli.log(
        f"submitted {kind} {array_id} ({name}): {len(jobs)} task(s), at most {min(len(jobs), args.array_parallelism)} at once"
    )
    cli.log(f"logs: {log} (and .err)" + (f"; index = position in {listing.name}" if len(jobs) > 1 else ""))
    if not args.wait:
        cli.log(f"watch it with `squeue -j {array_id}`; when it is done, run the next stage")
        return
    cli.log(f"waiting for {kind} {array_id} ...")
    try:
        failed, skipped = wait(jobs, entries, array_id, args.poll)
    except (KeyboardInterrupt, signals.Stopped):
        cli.log(f"stopped waiting; {kind} {array_id} goes on (squeue -j {array_id})")
        sys.exit(130)
    still = stage.pending(
        plan.run, [plan.tasks[i] for i in skipped], plan.config
    )  # left to another process, which may have failed
    if failed or still:
        raise PipelineError(
            f"{kind} {array_id}: {len(failed)} of {len(jobs)} task(s) failed, {len(still)} still pending:\n  "
            + "\n  ".join(failed)
            + "\nre-submit to run only what is still pending"
        )
    cli.log(f"{kind} {array_id}: all {len(jobs)} task(s) done")


if __name__ == "__main__":
    cli.main(lambda: run(parser().parse_args()))
