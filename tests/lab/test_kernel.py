"""`make reproduce` on a shared node: papermill's kernels listen on Unix sockets in a private
folder (IPC transport), not on TCP ports anyone on the node can reach; ipyparallel's connection
files are readable by the user alone."""

import os
import stat
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

from fedlib.lab import engines, kernel, reproduce

ROOT = Path(__file__).resolve().parents[2]


def test_papermill_kernel_runs_over_ipc_in_a_private_folder(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell(
        "import os, stat\nfrom ipykernel.kernelapp import IPKernelApp\napp = IPKernelApp.instance()\n"
        "print(app.transport, oct(stat.S_IMODE(os.stat(os.path.dirname(app.ip)).st_mode)), app.ip)"))
    nbformat.write(nb, tmp_path / "in.ipynb")
    prog = ("import sys, papermill as pm\nfrom fedlib.lab import kernel\n"
            f"out = pm.execute_notebook({str(tmp_path / 'in.ipynb')!r}, {str(tmp_path / 'out.ipynb')!r}, "
            "kernel_name='python3', progress_bar=False, **kernel.papermill_kwargs())\n"
            "print('CELL', out.cells[0].outputs[0]['text'].strip())\n")
    res = subprocess.run([sys.executable, "-c", prog], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr[-2000:]
    transport, mode, ip = next(x for x in res.stdout.splitlines() if x.startswith("CELL ")).split()[1:]
    assert (transport, mode) == ("ipc", "0o700")
    assert "without encryption" not in res.stderr
    assert not Path(ip).parent.exists()  # removed with the kernel


def test_reproduce_starts_its_kernels_over_ipc(monkeypatch, tmp_path):
    import papermill as pm

    seen = {}

    def fake_execute(src, dest, **kw):
        seen.update(kw)
        raise pm.PapermillExecutionError(0, 1, "stop", "here", "E", [])

    monkeypatch.setattr(pm, "execute_notebook", fake_execute)
    with pytest.raises(reproduce.NotebookFailed):
        reproduce.execute(tmp_path / "x.ipynb", tmp_path / "y.ipynb", {})
    assert seen["kernel_manager_class"] is kernel.IPCKernelManager


def test_ipyparallel_connection_files_are_the_users_alone(monkeypatch, tmp_path):
    """Whatever the controller writes while the engines start (cluster file, connection
    files) ends up 0600, also files written with the default umask."""
    security = tmp_path / "profile_default" / "security"

    class FakeClient:
        ids = [0, 1]

        def wait_for_engines(self, n, timeout):
            return None

        def close(self):
            return None

    class FakeCluster:
        def __init__(self, **kw):
            self.profile_dir = str(tmp_path / "profile_default")
            self.config = types.SimpleNamespace(MPILauncher=types.SimpleNamespace(mpi_cmd=None))

        def start_and_connect_sync(self):
            security.mkdir(parents=True)
            loose = security / "cluster-123.json"
            loose.write_text("{}")
            os.chmod(loose, 0o644)  # as a library that sets no mode
            (security / "ipcontroller-client.json").write_text("{}")  # under the umask
            return FakeClient()

        def stop_cluster_sync(self):
            return None

    monkeypatch.setitem(sys.modules, "ipyparallel", types.SimpleNamespace(Cluster=FakeCluster))
    pool = engines.Pool("mpi", n=2)
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in security.iterdir()}
    pool.close()
    assert modes == {"cluster-123.json": "0o600", "ipcontroller-client.json": "0o600"}
