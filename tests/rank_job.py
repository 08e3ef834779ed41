"""`mpiexec -n 2 python -m tests.rank_job JOBS.json`: the two-rank runs of a whole test session,
one after another in the same two processes (conftest's `two_ranks` fixture starts it once).

Each run goes through `fedlib.cli.main(["run", ...])`, the code `python -m fedlib run` runs, so a
run here is the run a separate `mpiexec` would make; the suite pays MPI's start and fedlib's
imports once instead of once per test (2 to 5 s each on this box). After each run, rank 0 writes
its exit status to the run's `done` file: a run that fails aborts the job (as it would abort its
own `mpiexec`), and the fixture then runs the runs without a `done` file on their own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(jobs_file: str) -> int:
    from mpi4py import MPI

    from fedlib import cli

    rank = MPI.COMM_WORLD.Get_rank()
    for job in json.loads(Path(jobs_file).read_text()):
        code = cli.main(job["argv"])
        if rank == 0:
            Path(job["done"]).write_text(str(code))
        if code != 0:  # every rank returns the same status (a failure aborts them all first)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
