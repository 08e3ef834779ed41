"""The WHOLE environment each launcher gives one task, as the sites run them (no cluster here).

Each fixture is one process of a real launch: what it must detect (launcher, world size, rank,
local rank, ranks on its node), the node's GPUs (vendor, count torch would see unmasked) and so
the GPU `device: auto` must pick, and whether it is the rank of its node that builds the caches.
Job-wide variables a batch shell exports (SLURM_JOB_*, PBS_*) are inherited by every task, so
each task fixture holds them too. Sources per fixture; Slurm's variables: the srun(1) and
sbatch(1) "OUTPUT ENVIRONMENT VARIABLES" sections and src/common/env.c; its MPI plugins:
src/plugins/mpi/{cray_shasta,pmi2,pmix}.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Site:
    name: str
    env: dict[str, str]
    launcher: str
    world: int | None
    rank: int | None
    local_rank: int | None
    local_size: int | None
    vendor: str  # nvidia | amd | intel: which masks the GPU runtime honours
    node_gpus: int  # devices the runtime shows with no mask
    gpu: int  # the index device: auto picks
    builds_caches: bool  # the node's first rank writes the node-local caches


def _slurm_job(nodes: str, n_nodes: int, ntasks: int, per_node: str, cluster: str) -> dict[str, str]:
    """What sbatch exports to the batch shell and every step inherits (sbatch(1))."""
    return {"SLURM_JOB_ID": "1234567", "SLURM_JOBID": "1234567", "SLURM_JOB_NAME": "fedlib",
            "SLURM_JOB_NODELIST": nodes, "SLURM_NODELIST": nodes, "SLURM_JOB_NUM_NODES": str(n_nodes),
            "SLURM_NNODES": str(n_nodes), "SLURM_NTASKS": str(ntasks), "SLURM_NPROCS": str(ntasks),
            "SLURM_TASKS_PER_NODE": per_node, "SLURM_JOB_CPUS_PER_NODE": f"56(x{n_nodes})",
            "SLURM_CLUSTER_NAME": cluster, "SLURM_SUBMIT_DIR": "/lustre/proj/fedlib",
            "SLURM_SUBMIT_HOST": "login01", "SLURM_JOB_ACCOUNT": "abc123", "SLURM_JOB_PARTITION": "batch",
            "SLURM_JOB_UID": "12345", "SLURM_JOB_USER": "me", "SLURM_GTIDS": "0", "ENVIRONMENT": "BATCH"}


def _srun_task(rank: int, local: int, node: int, ntasks: int, per_node: str, nodes: str,
               n_nodes: int, mpi: str) -> dict[str, str]:
    """What srun's step sets per task (srun(1) OUTPUT ENVIRONMENT VARIABLES; env.c)."""
    return {"SLURM_STEP_ID": "0", "SLURM_STEPID": "0", "SLURM_STEP_NUM_TASKS": str(ntasks),
            "SLURM_STEP_NUM_NODES": str(n_nodes), "SLURM_STEP_NODELIST": nodes,
            "SLURM_STEP_TASKS_PER_NODE": per_node, "SLURM_NTASKS": str(ntasks), "SLURM_NPROCS": str(ntasks),
            "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(local), "SLURM_NODEID": str(node),
            "SLURM_TASK_PID": "4242", "SLURM_MPI_TYPE": mpi, "SLURM_DISTRIBUTION": "block",
            "SLURM_CPU_BIND": "quiet,mask_cpu:0x00000000000000FE", "SLURM_CPU_BIND_TYPE": "mask_cpu:",
            "SLURM_LAUNCH_NODE_IPADDR": "10.1.0.1", "SLURM_SRUN_COMM_HOST": "10.1.0.1",
            "SLURM_SRUN_COMM_PORT": "40123", "SLURM_STEP_LAUNCHER_PORT": "40123",
            "SLURM_UMASK": "0022", "SLURM_PRIO_PROCESS": "0", "SLURMD_NODENAME": f"node{node:05d}"}


# Frontier-like, Slurm 22.05 with `--mpi=cray_shasta` (the default there): the plugin sets only
# PALS_APID/APINFO/RANKID/NODEID/SPOOL_DIR (src/plugins/mpi/cray_shasta/mpi_cray_shasta.c before
# 23.02). `srun -N2 --ntasks-per-node=8 --gpus-per-node=8`: Slurm's gpu/rsmi plugin masks with
# ROCR_VISIBLE_DEVICES (OLCF Frontier user guide, "Slurm GPU flags"). Task 13 = node 1, local 5.
FRONTIER_OLD = Site("slurm cray_shasta < 23.02 (Frontier)", {
    **_slurm_job("frontier[00001-00002]", 2, 16, "8(x2)", "frontier"),
    **_srun_task(13, 5, 1, 16, "8(x2)", "frontier[00001-00002]", 2, "cray_shasta"),
    "PALS_APID": "8a1c5fd6-2b66-4f8e-9b1d-1c6f3b3c2e10",
    "PALS_APINFO": "/var/spool/slurmd/mpi_cray_shasta/1234567.0/apinfo",
    "PALS_RANKID": "13", "PALS_NODEID": "1",
    "PALS_SPOOL_DIR": "/var/spool/slurmd/mpi_cray_shasta/1234567.0",
    "SLURM_CPUS_PER_TASK": "7", "SLURM_GPUS_ON_NODE": "8", "SLURM_JOB_GPUS": "0,1,2,3,4,5,6,7",
    "SLURM_STEP_GPUS": "0,1,2,3,4,5,6,7", "ROCR_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7",
    "GPU_DEVICE_ORDINAL": "0,1,2,3,4,5,6,7",
}, "pals", 16, 13, 5, 8, "amd", 8, 5, False)

# Perlmutter-like, Slurm >= 23.02 with cray_shasta: PALS_LOCAL_RANKID and PMI_RANK/SIZE/
# LOCAL_RANK/LOCAL_SIZE/JOBID/UNIVERSE_SIZE added (Slurm 23.02 NEWS, mpi_cray_shasta.c).
# `srun -N2 --ntasks-per-node=4 --gpus-per-node=4` (NERSC Perlmutter "Running jobs": GPU
# affinity by local rank); gres/gpu sets CUDA_VISIBLE_DEVICES. Task 6 = node 1, local 2.
PERLMUTTER = Site("slurm cray_shasta >= 23.02 (Perlmutter)", {
    **_slurm_job("nid[001000-001001]", 2, 8, "4(x2)", "perlmutter"),
    **_srun_task(6, 2, 1, 8, "4(x2)", "nid[001000-001001]", 2, "cray_shasta"),
    "PALS_APID": "5b2d9e71-0c33-4a7f-8d2e-6e9a1f4b7c21",
    "PALS_APINFO": "/var/spool/slurmd/mpi_cray_shasta/1234567.0/apinfo",
    "PALS_RANKID": "6", "PALS_NODEID": "1", "PALS_LOCAL_RANKID": "2",
    "PALS_SPOOL_DIR": "/var/spool/slurmd/mpi_cray_shasta/1234567.0",
    "PMI_RANK": "6", "PMI_SIZE": "8", "PMI_LOCAL_RANK": "2", "PMI_LOCAL_SIZE": "4",
    "PMI_JOBID": "1234567.0", "PMI_UNIVERSE_SIZE": "8",
    "SLURM_CPUS_PER_TASK": "32", "SLURM_GPUS_ON_NODE": "4", "SLURM_JOB_GPUS": "0,1,2,3",
    "SLURM_STEP_GPUS": "0,1,2,3", "CUDA_VISIBLE_DEVICES": "0,1,2,3",
}, "pals", 8, 6, 2, 4, "nvidia", 4, 2, False)

# A generic GPU cluster, `srun --mpi=pmix -N2 -n8 --gpus-per-node=4` (Slurm mpi/pmix: PMIX_RANK,
# PMIX_NAMESPACE, the server URIs and tmpdirs; no PMIX_SIZE; Slurm mpi_plugin_dev_guide / pmixp).
SLURM_PMIX = Site("slurm pmix", {
    **_slurm_job("gpu[01-02]", 2, 8, "4(x2)", "cluster"),
    **_srun_task(4, 0, 1, 8, "4(x2)", "gpu[01-02]", 2, "pmix"),
    "PMIX_RANK": "4", "PMIX_NAMESPACE": "slurm.pmix.1234567.0", "PMIX_VERSION": "4.2.9",
    "PMIX_SERVER_URI2": "pmix-server.4242;tcp4://127.0.0.1:38243",
    "PMIX_SERVER_URI3": "pmix-server.4242;tcp4://127.0.0.1:38243",
    "PMIX_SERVER_URI4": "pmix-server.4242;tcp4://127.0.0.1:38243",
    "PMIX_SERVER_URI21": "pmix-server.4242;tcp4://127.0.0.1:38243",
    "PMIX_SERVER_TMPDIR": "/var/spool/slurmd/pmix.1234567.0/",
    "PMIX_SYSTEM_TMPDIR": "/tmp", "PMIX_SECURITY_MODE": "native", "PMIX_GDS_MODULE": "hash",
    "PMIX_BFROP_BUFFER_TYPE": "PMIX_BFROP_BUFFER_NON_DESC", "PMIX_HOSTNAME": "gpu02",
    "SLURM_GPUS_ON_NODE": "4", "SLURM_JOB_GPUS": "0,1,2,3", "CUDA_VISIBLE_DEVICES": "0,1,2,3",
}, "slurm", 8, 4, 0, 4, "nvidia", 4, 0, True)

# `srun --mpi=pmi2 -n11 --gpus-per-task=1` over 3 nodes (4, 4, 3 tasks): mpi/pmi2 sets PMI_FD,
# PMI_JOBID, PMI_RANK, PMI_SIZE (src/plugins/mpi/pmi2/setup.c); --gpus-per-task implies
# per-task GPU binding, so each task sees one GPU (srun(1) --gpus-per-task). Task 9 = node 2, local 1.
SLURM_PMI2 = Site("slurm pmi2", {
    **_slurm_job("gpu[01-03]", 3, 11, "4(x2),3", "cluster"),
    **_srun_task(9, 1, 2, 11, "4(x2),3", "gpu[01-03]", 3, "pmi2"),
    "PMI_FD": "7", "PMI_JOBID": "1234567.0", "PMI_RANK": "9", "PMI_SIZE": "11",
    "SLURM_GPUS_ON_NODE": "3", "SLURM_JOB_GPUS": "0,1,2", "CUDA_VISIBLE_DEVICES": "1",
}, "slurm", 11, 9, 1, 3, "nvidia", 3, 0, False)


def _pbs(host: str, nodes: int, ncpus: int) -> dict[str, str]:
    """What PBS Pro exports to the job (PBS Professional User's Guide, "Environment variables");
    OMP_NUM_THREADS defaults to the chunk's ncpus unless ompthreads is requested."""
    return {"PBS_JOBID": f"4242.{host}-pbs-0001", "PBS_JOBNAME": "fedlib", "PBS_QUEUE": "debug",
            "PBS_ACCOUNT": "abc123", "PBS_ENVIRONMENT": "PBS_BATCH", "PBS_O_WORKDIR": "/lus/proj/fedlib",
            "PBS_NODEFILE": f"/var/spool/pbs/aux/4242.{host}-pbs-0001", "PBS_JOBDIR": "/home/me",
            "PBS_O_HOST": f"{host}-login-01", "PBS_NODENUM": "0", "PBS_TASKNUM": "1",
            "NCPUS": str(ncpus), "OMP_NUM_THREADS": str(ncpus), "TMPDIR": f"/var/tmp/pbs.4242.{host}"}


def _pals_mpiexec(rank: int, local: int, node: int, size: int, ppn: int, depth: int) -> dict[str, str]:
    """What PALS's own mpiexec sets (HPE PALS mpiexec(1); ALCF's affinity scripts read
    PALS_LOCAL_RANKID / PMI_LOCAL_RANK and PALS_LOCAL_SIZE)."""
    return {"PALS_APID": "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b", "PALS_APINFO": "/var/run/palsd/1f2e/apinfo",
            "PALS_RANKID": str(rank), "PALS_NODEID": str(node), "PALS_LOCAL_RANKID": str(local),
            "PALS_LOCAL_SIZE": str(ppn), "PALS_DEPTH": str(depth), "PALS_SPOOL_DIR": "/var/run/palsd/1f2e",
            "PMI_RANK": str(rank), "PMI_SIZE": str(size), "PMI_LOCAL_RANK": str(local),
            "PMI_LOCAL_SIZE": str(ppn), "PMI_JOBID": "4242", "PMI_UNIVERSE_SIZE": str(size),
            "PMI_CONTROL_PORT": "6201,6202", "PMI_SHARED_SECRET": "1234567890123456789"}


# Polaris-like: PBS + PALS, `mpiexec -n 8 --ppn 4 --depth 8 --cpu-bind depth` (ALCF Polaris
# "Running jobs"); 4 A100 per node, no mask unless the affinity script sets one. Rank 5 = node 1.
POLARIS = Site("pbs + pals mpiexec (Polaris)", {
    **_pbs("polaris", 2, 64), **_pals_mpiexec(5, 1, 1, 8, 4, 8),
}, "pals", 8, 5, 1, 4, "nvidia", 4, 1, False)

# Aurora-like: PBS + PALS, `mpiexec -n 24 --ppn 12 --cpu-bind list:...` (ALCF Aurora "Running
# jobs"); 6 PVC GPUs x 2 tiles = 12 devices with ZE_FLAT_DEVICE_HIERARCHY=FLAT. Rank 12 = node 1.
AURORA = Site("pbs + pals mpiexec (Aurora)", {
    **_pbs("aurora", 2, 208), **_pals_mpiexec(12, 0, 1, 24, 12, 1),
    "ZE_FLAT_DEVICE_HIERARCHY": "FLAT", "CCL_PROCESS_LAUNCHER": "pmix",
}, "pals", 24, 12, 0, 12, "intel", 12, 0, True)

# Intel MPI's Hydra `mpiexec.hydra -n 8 -ppn 4` inside a Slurm allocation: Hydra starts one proxy
# per node with `srun` (a step of 2 tasks), each rank gets PMI_RANK/PMI_SIZE/PMI_FD and
# MPI_LOCALRANKID/MPI_LOCALNRANKS (Intel MPI Developer Reference, "Hydra environment variables").
HYDRA = Site("hydra / intel mpi", {
    **_slurm_job("gpu[01-02]", 2, 8, "4(x2)", "cluster"),
    **_srun_task(1, 0, 1, 2, "1(x2)", "gpu[01-02]", 2, "none"),
    "PMI_RANK": "6", "PMI_SIZE": "8", "PMI_FD": "6", "MPI_LOCALRANKID": "2", "MPI_LOCALNRANKS": "4",
    "I_MPI_HYDRA_BOOTSTRAP": "slurm", "I_MPI_ROOT": "/opt/intel/oneapi/mpi/2021.13",
    "CUDA_VISIBLE_DEVICES": "0,1,2,3", "SLURM_GPUS_ON_NODE": "4",
}, "pmi", 8, 6, 2, 4, "nvidia", 4, 2, False)

# Open MPI 5 `mpirun -n 8 --map-by ppr:4:node` inside a Slurm allocation: the prted daemons are
# an srun step of 2, the ranks get OMPI_COMM_WORLD_* and PMIX_* (Open MPI mpirun(1), "Exported
# environment variables").
OPENMPI = Site("open mpi mpirun", {
    **_slurm_job("gpu[01-02]", 2, 8, "4(x2)", "cluster"),
    **_srun_task(1, 0, 1, 2, "1(x2)", "gpu[01-02]", 2, "none"),
    "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_RANK": "7", "OMPI_COMM_WORLD_LOCAL_RANK": "3",
    "OMPI_COMM_WORLD_LOCAL_SIZE": "4", "OMPI_COMM_WORLD_NODE_RANK": "3", "OMPI_UNIVERSE_SIZE": "8",
    "OMPI_APP_CTX_NUM_PROCS": "8", "OMPI_NUM_APP_CTX": "1", "PMIX_RANK": "7",
    "PMIX_NAMESPACE": "prterun-gpu01-4242@1", "PMIX_SERVER_URI41": "prterun-gpu01-4242@0.0;tcp4://10.1.0.1:40001",
    "CUDA_VISIBLE_DEVICES": "0,1,2,3", "SLURM_GPUS_ON_NODE": "4",
}, "openmpi", 8, 7, 3, 4, "nvidia", 4, 3, False)

# A batch script's own shell (`python ...` without srun): the job's variables, SLURM_PROCID=0
# and SLURM_LOCALID=0 of the batch step, but no step variables: one process, not a launch.
BATCH = Site("sbatch's shell", {
    **_slurm_job("gpu[01-02]", 2, 8, "4(x2)", "cluster"),
    "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_CPUS_ON_NODE": "56",
    "SLURM_GPUS_ON_NODE": "4", "SLURM_JOB_GPUS": "0,1,2,3", "CUDA_VISIBLE_DEVICES": "0,1,2,3",
}, "none", None, None, None, None, "nvidia", 4, 0, True)

SITES = [FRONTIER_OLD, PERLMUTTER, SLURM_PMIX, SLURM_PMI2, POLARIS, AURORA, HYDRA, OPENMPI, BATCH]
LAUNCH_PREFIXES = ("OMPI_", "PMI_", "PMIX_", "PALS_", "SLURM_", "MPI_LOCAL", "PBS_", "I_MPI_",
                   "CUDA_VISIBLE", "ROCR_", "HIP_VISIBLE", "ZE_", "GPU_DEVICE", "OMP_NUM", "NCPUS")
