"""The sites' own rules that the cluster/ recipes follow, quoted from their user guides with the
page and the documentation repository's commit they were read at (mid-2026). Each test that
checks a recipe against a rule names the constant here. NERSC's current pages were not
reachable from this workspace (its guide lives on GitLab): the Perlmutter lines in cluster/
stay as they were, unverified against the current guide, and no rule is quoted for them.
"""

ALCF = "argonne-lcf/user-guides@7d04a3f91d5eaf6d731be6d267617c2e5cbe722e (2026-08-19)"
OLCF = "olcf/olcf-user-docs@2745903177977d57d4ad353203f5fd4df05dcc97 (2026-07-22)"

# --- §1 submission ------------------------------------------------------------------------------
POLARIS_QUEUES = ("https://docs.alcf.anl.gov/polaris/running-jobs/", ALCF, """
| debug         | 1        | 2        | 5 min    | 1 hr     |
| debug-scaling | 1        | 10       | 5 min    | 1 hr     |
| prod          | 10       | 496      | 5 min    | 24 hrs   | Routing queue; See below
| *capacity*        | 1        | 4       | 5 min    | 168 hrs     |
`prod` is a routing queue and routes your job to one of the following six execution queues:
| small           | 10       | 24       | 5 min    | 3 hrs    |
| medium          | 25       | 99       | 5 min    | 6 hrs    |
| large           | 100      | 496      | 5 min    | 24 hrs   |
qsub -I -l select=1 -l filesystems=home:eagle -l walltime=1:00:00 -q debug -A <project_name>""")
# (queue, min nodes, max nodes, max hours) as the table above says; the preemptable and demand
# queues (by request, killable) are left out
POLARIS_TABLE = [("debug", 1, 2, 1), ("debug-scaling", 1, 10, 1), ("prod", 10, 24, 3),
                 ("prod", 25, 99, 6), ("prod", 100, 496, 24), ("capacity", 1, 4, 168)]

AURORA_QUEUES = ("https://docs.alcf.anl.gov/aurora/running-jobs-aurora/", ALCF, """
| debug          | 1        | 2          | 5 min    | 1 hr             |
| debug-scaling  | 2        | 256        | 5 min    | 1 hr             |
| prod           | 256      | 10,624[^1] | 5 min    | 24 hrs           | Routing queue
| capacity       | 1        | 16         | 5 min    | 7 days (168 hrs) |
| small           | 256      | 1024       | 5 min    | 12 hrs   |
| medium          | 1025     | 1999       | 5 min    | 18 hrs   |
| large           | 2000     | 10,624[^1] | 5 min    | 24 hrs   |
qsub -l select=1 -l walltime=30:00 -l filesystems=flare -A <your_ProjectName> -q debug -I""")
AURORA_TABLE = [("debug", 1, 2, 1), ("debug-scaling", 2, 256, 1), ("capacity", 1, 16, 168),
                ("prod", 256, 1024, 12), ("prod", 1025, 1999, 18), ("prod", 2000, 10624, 24)]
AURORA_FILESYSTEMS = ("https://docs.alcf.anl.gov/aurora/known-issues/", ALCF, """
#### Grand/Eagle
These won't be mounted on Aurora initially, but they might be mounted around May 2025, depending
on feasibility.""")  # the Aurora pages' job scripts use `-l filesystems=home:flare` (9 of them)

FRONTIER_BINS = ("https://docs.olcf.ornl.gov/systems/frontier_user_guide.html", OLCF, """
| Bin | Min Nodes | Max Nodes | Max Walltime (Hours) | Aging Boost (Days) |
| 3   | 184       | 1,881     | 12.0                 | 0                  |
| 4   | 92        | 183       | 6.0                  | 0                  |
| 5   | 1         | 91        | 2.0                  | 0                  |""")

POLARIS_MODULES = ("https://docs.alcf.anl.gov/polaris/data-science/python/", ALCF, """
module use /soft/modulefiles; module load conda; conda activate base
We can create a `venv` on top of the base Anaconda environment (with `--system-site-packages` to
inherit the `base` packages)""")
AURORA_MODULES = ("https://docs.alcf.anl.gov/aurora/data-science/python/", ALCF, """
Any time you wish to use this virtual environment in future shell sessions, be sure to first load
the base AI/ML modules (e.g., `module load frameworks`) before `source /path/to/new/venv/bin/activate`.""")

# --- §2 MPI and collectives -----------------------------------------------------------------------
CRAY_GTL = ("https://docs.olcf.ornl.gov/systems/frontier_user_guide.html#mpich-gpu-support-enabled", OLCF, """
Setting this environment variable to ``1`` will enable GPU-aware MPI support in Cray MPICH, and is
required to pass GPU buffers directly to MPI calls. The library `libmpi_gtl_hsa.so` must also be
linked in, otherwise Cray MPICH will print an error message and exit immediately.""")

FRONTIER_RCCL = ("https://docs.olcf.ornl.gov/software/analytics/pytorch_frontier.html", OLCF, """
RCCL defaults to inter-node communication using TCP/IP Sockets, which does not scale to the large
job sizes on Frontier. [...] The recommended way to use this plugin is to load the
``rccl-net-plugin`` module after having loaded ``rocm``.
To use the alternative protocol you need to both add the flag ``--network=disable_rdzv_get`` to
your Slurm allocation request and set the environment variable ``FI_CXI_RDZV_PROTO=alt_read``.
Do not use the ``memhooks`` monitor as this can cause deadlocks with the plugin.
   NCCL_CROSS_NIC=1
   NCCL_NET_GDR_LEVEL=PHB
   NCCL_SOCKET_IFNAME=hsn0,hsn1,hsn2,hsn3
   HSA_FORCE_FINE_GRAIN_PCIE=1
   FI_MR_CACHE_MONITOR=kdreg2
   FI_CXI_DISABLE_HOST_REGISTER=1
   FI_CXI_DEFAULT_CQ_SIZE=131072
   FI_CXI_RDZV_PROTO=alt_read
   FI_CXI_RDZV_EAGER_SIZE=0
   FI_CXI_RDZV_THRESHOLD=0
   FI_CXI_RDZV_GET_MIN=0
   FI_CXI_DEFAULT_TX_SIZE=2048
   FI_CXI_RX_MATCH_MODE=hybrid""")  # FI_CXI_ATS appears nowhere in the current guide
FRONTIER_RCCL_ENV = {"NCCL_CROSS_NIC": "1", "NCCL_NET_GDR_LEVEL": "PHB",
                     "NCCL_SOCKET_IFNAME": "hsn0,hsn1,hsn2,hsn3",
                     "HSA_FORCE_FINE_GRAIN_PCIE": "1", "FI_MR_CACHE_MONITOR": "kdreg2",
                     "FI_CXI_DISABLE_HOST_REGISTER": "1", "FI_CXI_DEFAULT_CQ_SIZE": "131072",
                     "FI_CXI_DEFAULT_TX_SIZE": "2048", "FI_CXI_RX_MATCH_MODE": "hybrid"}
FRONTIER_RDZV_ENV = {"FI_CXI_RDZV_PROTO": "alt_read", "FI_CXI_RDZV_EAGER_SIZE": "0",
                     "FI_CXI_RDZV_THRESHOLD": "0", "FI_CXI_RDZV_GET_MIN": "0"}

POLARIS_NCCL = ("https://docs.alcf.anl.gov/polaris/applications-and-libraries/libraries/nccl/", ALCF, """
export NCCL_NET_GDR_LEVEL=PHB
export NCCL_CROSS_NIC=1
export NCCL_COLLNET_ENABLE=1
export NCCL_NET="AWS Libfabric"
export LD_LIBRARY_PATH=/soft/libraries/aws-ofi-nccl/v1.9.1-aws/lib:$LD_LIBRARY_PATH
export LD_LIBRARY_PATH=/soft/libraries/hwloc/lib/:$LD_LIBRARY_PATH
export FI_CXI_DISABLE_HOST_REGISTER=1
export FI_MR_CACHE_MONITOR=userfaultfd
export FI_CXI_DEFAULT_CQ_SIZE=131072
The key here is to enable the AWS plugin (https://github.com/aws/aws-ofi-nccl).""")
POLARIS_NCCL_ENV = {"NCCL_NET_GDR_LEVEL": "PHB", "NCCL_CROSS_NIC": "1", "NCCL_COLLNET_ENABLE": "1",
                    "NCCL_NET": "AWS Libfabric", "FI_CXI_DISABLE_HOST_REGISTER": "1",
                    "FI_MR_CACHE_MONITOR": "userfaultfd", "FI_CXI_DEFAULT_CQ_SIZE": "131072"}

AURORA_ONECCL = ("https://docs.alcf.anl.gov/aurora/data-science/frameworks/oneCCL/", ALCF, """
Among them, there is a minimal list, which are essential for functionality for training
workloads, and we have tested up to 1024 nodes.
**Minimal set**
export CCL_PROCESS_LAUNCHER=pmix
export CCL_ATL_TRANSPORT=mpi
export FI_MR_CACHE_MONITOR=userfaultfd
export CCL_KVS_MODE=mpi""")
AURORA_ONECCL_ENV = {"CCL_PROCESS_LAUNCHER": "pmix", "CCL_ATL_TRANSPORT": "mpi",
                     "FI_MR_CACHE_MONITOR": "userfaultfd", "CCL_KVS_MODE": "mpi"}

# --- §3 binding and storage -----------------------------------------------------------------------
FRONTIER_NUMA = ("https://docs.olcf.ornl.gov/systems/frontier_user_guide.html#numa-note", OLCF, """
NUMA 0: hardware threads 000-007, 064-071 | GPU 4;  hardware threads 008-015, 072-079 | GPU 5
NUMA 1: hardware threads 016-023, 080-087 | GPU 2;  hardware threads 024-031, 088-095 | GPU 3
NUMA 2: hardware threads 032-039, 096-103 | GPU 6;  hardware threads 040-047, 104-111 | GPU 7
NUMA 3: hardware threads 048-055, 112-119 | GPU 0;  hardware threads 056-063, 120-127 | GPU 1
By default, Frontier reserves the first core in each L3 cache region.
$ OMP_NUM_THREADS=7 srun -N1 -n8 -c7 --gpus-per-task=1 --gpu-bind=closest ./hello_jobstep | sort
MPI 000 - OMP 000 - HWT 001 - Node frontier00256 - RT_GPU_ID 0 - GPU_ID 4 - Bus_ID d1
MPI 001 - OMP 000 - HWT 009 - Node frontier00256 - RT_GPU_ID 0 - GPU_ID 5 - Bus_ID d6
MPI 002 - OMP 000 - HWT 017 - Node frontier00256 - RT_GPU_ID 0 - GPU_ID 2 - Bus_ID c9
MPI 003 - OMP 000 - HWT 025 - Node frontier00256 - RT_GPU_ID 0 - GPU_ID 3 - Bus_ID ce
MPI 004 - OMP 000 - HWT 033 - Node frontier00256 - RT_GPU_ID 0 - GPU_ID 6 - Bus_ID d9
MPI 005 - OMP 000 - HWT 041 - Node frontier00256 - RT_GPU_ID 0 - GPU_ID 7 - Bus_ID de
MPI 006 - OMP 000 - HWT 049 - Node frontier00256 - RT_GPU_ID 0 - GPU_ID 0 - Bus_ID c1
MPI 007 - OMP 000 - HWT 057 - Node frontier00256 - RT_GPU_ID 0 - GPU_ID 1 - Bus_ID c6""")
# Frontier's --gpu-bind=closest: each rank's one GCD (RT_GPU_ID 0), its bus from the listing
FRONTIER_CLOSEST_BUS = ["d1", "d6", "c9", "ce", "d9", "de", "c1", "c6"]
FRONTIER_GCD_ORDER = "4,5,2,3,6,7,0,1"  # local rank i (cores 8i+1..8i+7) -> the GCD of its L3

FRONTIER_STORAGE = ("https://docs.olcf.ornl.gov/data/index.html", OLCF, """
| User Home | ``/ccs/home/[userid]`` | M1, M2 | NFS | User set | 50 GB | Yes | No | 90 days |
  Frontier: Read/Write |
- Member Work Orion Directory:  ``/lustre/orion/scratch/[userid]/[projid]`` or ``$MEMBERWORK/[projid]``""")

# --- §4 at scale ----------------------------------------------------------------------------------
FRONTIER_SBCAST = ("https://docs.olcf.ornl.gov/software/python/sbcast_conda.html", OLCF, """
On Frontier, this is highly recommended at scale if you have multiple shared libraries on
Lustre/NFS file systems. [...]
#SBATCH -C nvme
sbcast -pf ./torch_env.tar.gz /mnt/bb/${USER}/torch_env.tar.gz
if [ ! "$?" == "0" ]; then [...] echo "SBCAST failed!"; exit 1
srun -N ${SLURM_NNODES} --ntasks-per-node 1 mkdir /mnt/bb/${USER}/torch_env""")
AURORA_COPPER = ("https://docs.alcf.anl.gov/aurora/data-management/copper/copper/", ALCF, """
On Aurora, its primary production use is reducing redundant startup-time I/O, especially Python
imports and shared-library loading at large node counts.
For a Python virtual environment or custom package directory, prepending Copper only to the
relevant `PYTHONPATH` entry is usually sufficient.
module load copper
launch_copper.sh
  --genv=PYTHONPATH=/tmp/${USER}/copper/${CUSTOM_VENV_PATH}/lib64/python3.10/site-packages:$PYTHONPATH""")
# The page names no node count from which Copper is needed (the "~1000 nodes" is not in it).
