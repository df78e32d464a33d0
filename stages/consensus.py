"""consensus: for each condition of several annotators (noise --annotators) with a psx, a consensus label per row
and each annotator's quality (cleanlab's CROWDLAB), and the condition <c>_consensus made of those labels."""

from pipeline import conditions, consensus, store, tasks, workers
from pipeline.layout import RunDir


class Consensus(tasks.Stage):
    name = "consensus"

    def select(self, run: RunDir, select: tasks.CondSelect, config) -> list[tasks.Cond]:
        """The conditions of several annotators (``--cond`` names others: refused when run)."""
        if select.cond:
            return super().select(run, select, config)
        return [tasks.Cond(c) for c, spec in conditions.registry(run).items() if spec.kind == "annotators"]

    def run(self, run: RunDir, task: tasks.Cond, config, device, force: bool = False) -> tuple[store.Outcome, str]:
        made, registered = consensus.run_consensus(run, task.cond, force)
        info = store.verify(run.consensus(task.cond))["info"]
        lines = [f"{made.value}: {run.consensus(task.cond)}  {info['changed_from_vote']} labels differ from the vote"]
        lines += [
            f"  annotator {a['name']}: quality {a['quality']:.3f}, agrees with the consensus on "
            f"{a['agreement_with_consensus']:.1%} of its {a['labelled']} labels"
            for a in info["annotators"]
        ]
        if "error_vs_truth" in info:
            lines.append(
                "  wrong against the dataset's labels: "
                + ", ".join(f"{k} {v:.2%}" for k, v in info["error_vs_truth"].items())
            )
        lines.append(f"  each row's consensus quality (cleanlab's score): {run.consensus_quality(task.cond)}")
        lines.append(f"{registered.value}: {run.labels(task.cond + consensus.SUFFIX)} (condition)")
        return store.Outcome.of([made, registered]), "\n".join(lines)


STAGE = Consensus()

if __name__ == "__main__":
    workers.main(STAGE)
