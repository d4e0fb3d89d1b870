"""Which worker of a multi-worker run this process is, read from TF_CONFIG or from SLURM's
variables.

TensorFlow-free, so the CLI can ask before any TensorFlow import. Keras' multi-worker pattern: the
chief (task ``chief``, or ``worker`` 0 when the cluster has no chief) writes the run folder; every
other worker writes what it must (checkpoints, backups) to a scratch folder of its own and removes
it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from brats_seg.errors import ConfigError

# Ports for the workers of a SLURM step when srun reserved none (--resv-ports): a base spread by job
# id, so two jobs sharing a node rarely collide; each task on a node adds its local id.
_SLURM_PORT_BASE = 15000
_SLURM_PORT_SPREAD = 20000


@dataclass(frozen=True)
class WorkerRole:
    """This process's place in the cluster (a single process is the chief of a one-worker
    cluster)."""

    task_type: str | None = None
    index: int = 0
    workers: int = 1
    has_chief_task: bool = False

    @property
    def is_chief(self) -> bool:
        if self.task_type in (None, "chief"):
            return True
        return self.task_type == "worker" and self.index == 0 and not self.has_chief_task

    @property
    def name(self) -> str:
        return f"{self.task_type or 'worker'}-{self.index}"

    def scratch_dir(self, run_dir: str | Path) -> Path:
        """Where a non-chief worker writes its checkpoints and backups (removed when it is done)."""
        return Path(run_dir) / f".{self.name}"


SINGLE = WorkerRole()


def read_tf_config(environ: Mapping[str, str] | None = None) -> dict | None:
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG")
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"TF_CONFIG: not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise ConfigError("TF_CONFIG: expected a JSON object with 'cluster' and 'task'")
    return config


def role_from_tf_config(config: Mapping) -> WorkerRole:
    cluster = config.get("cluster") or {}
    task = config.get("task") or {}
    if not isinstance(cluster, Mapping) or not isinstance(task, Mapping):
        raise ConfigError("TF_CONFIG: 'cluster' and 'task' must be JSON objects")
    if set(cluster) - {"chief", "worker", "evaluator"}:
        raise ConfigError(
            f"TF_CONFIG: task types {sorted(set(cluster) - {'chief', 'worker', 'evaluator'})} "
            "are not supported (MultiWorkerMirroredStrategy takes 'chief' and 'worker')"
        )
    task_type = task.get("type")
    index = task.get("index", 0)
    if (
        task_type not in cluster
        or not isinstance(index, int)
        or not 0 <= index < len(cluster[task_type])
    ):
        raise ConfigError(
            f"TF_CONFIG: task {task_type!r} {index!r} is not in the cluster {dict(cluster)}"
        )
    workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    return WorkerRole(
        task_type=task_type, index=index, workers=workers, has_chief_task="chief" in cluster
    )


def expand_hostlist(hostlist: str) -> list[str]:
    """SLURM's compact host list to host names: ``gpu[01-03,07],login1`` -> gpu01 gpu02 gpu03 gpu07
    login1."""
    hosts: list[str] = []
    for match in re.finditer(r"([^,\[]+)(?:\[([^\]]+)\])?([^,\[]*)", hostlist):
        prefix, ranges, suffix = match.groups()
        if not ranges:
            hosts.append(prefix + suffix)
            continue
        for part in ranges.split(","):
            low, _, high = part.partition("-")
            for number in range(int(low), int(high or low) + 1):
                hosts.append(f"{prefix}{number:0{len(low)}d}{suffix}")
    return hosts


def expand_tasks_per_node(spec: str) -> list[int]:
    """SLURM's tasks-per-node list: ``2(x3),1`` -> [2, 2, 2, 1]."""
    counts: list[int] = []
    for part in spec.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if not match:
            raise ConfigError(f"SLURM_STEP_TASKS_PER_NODE={spec!r}: cannot read it")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def _slurm_ports(environ: Mapping[str, str], per_node: int) -> list[int]:
    reserved = environ.get("SLURM_STEP_RESV_PORTS")
    if reserved:
        low, _, high = reserved.partition("-")
        ports = list(range(int(low), int(high or low) + 1))
        if len(ports) >= per_node:
            return ports[:per_node]
    base = _SLURM_PORT_BASE + int(environ.get("SLURM_JOB_ID", "0")) % _SLURM_PORT_SPREAD
    return [base + k for k in range(per_node)]


def slurm_tf_config(environ: Mapping[str, str] | None = None) -> dict | None:
    """TF_CONFIG for the tasks of the current ``srun`` step, one worker per task; None outside a
    SLURM step.

    Ranks are laid out in blocks (SLURM's default distribution): node 0 holds ranks 0..n0-1, and so
    on.
    """
    environ = os.environ if environ is None else environ
    if "SLURM_PROCID" not in environ or "SLURM_STEP_NODELIST" not in environ:
        return None
    hosts = expand_hostlist(environ["SLURM_STEP_NODELIST"])
    per_node = expand_tasks_per_node(environ.get("SLURM_STEP_TASKS_PER_NODE", "1"))
    if len(per_node) != len(hosts):
        raise ConfigError(
            f"SLURM_STEP_TASKS_PER_NODE={environ.get('SLURM_STEP_TASKS_PER_NODE')!r} does not "
            f"match the {len(hosts)} nodes of SLURM_STEP_NODELIST"
        )
    ports = _slurm_ports(environ, max(per_node))
    addresses = [
        f"{host}:{ports[k]}"
        for host, count in zip(hosts, per_node, strict=True)
        for k in range(count)
    ]
    rank = int(environ["SLURM_PROCID"])
    node, local = environ.get("SLURM_NODEID"), environ.get("SLURM_LOCALID")
    if node is not None and local is not None and rank != sum(per_node[: int(node)]) + int(local):
        raise ConfigError(
            f"SLURM task {rank} is not laid out in blocks over the nodes; launch with "
            "srun --distribution=block for trainer.strategy=multiworker"
        )
    return {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": rank}}


def cluster_config(environ: Mapping[str, str] | None = None) -> dict | None:
    """The cluster of a multi-worker run: TF_CONFIG if set, else the SLURM step's tasks, else
    None."""
    return read_tf_config(environ) or slurm_tf_config(environ)


def worker_role(strategy: str, environ: Mapping[str, str] | None = None) -> WorkerRole:
    """This process's role for ``trainer.strategy``; every strategy but multiworker runs as one
    chief."""
    if strategy != "multiworker":
        return SINGLE
    config = cluster_config(environ)
    return role_from_tf_config(config) if config else SINGLE


def export_tf_config(strategy: str) -> None:
    """Under ``srun`` without TF_CONFIG, describe the step's tasks in TF_CONFIG for
    MultiWorkerMirroredStrategy."""
    if strategy != "multiworker" or os.environ.get("TF_CONFIG"):
        return
    config = slurm_tf_config()
    if config is not None:
        os.environ["TF_CONFIG"] = json.dumps(config)


def launched_as_non_chief(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment makes this process a non-chief worker, read before any config is
    composed."""
    try:
        config = cluster_config(environ)
        return bool(config) and not role_from_tf_config(config).is_chief
    except ConfigError:
        return False  # the job itself reports the bad cluster description, as one line
