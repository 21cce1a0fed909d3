"""Many runs at once on one environment, one runs root and one image cache.

Two members of an array job, two users' runs or two tuning workers start at the same
moment; none may fail or change the other's results because of it. Each test starts its
processes together through a barrier (or at once as subprocesses), then requires every one
to succeed with what it would have produced alone.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import traceback
from pathlib import Path

TOGETHER = 8  # processes started at the same moment


def _register(prefix: str, barrier, results) -> None:
    """One process's kernel registration, released with the others."""
    sys.prefix = prefix  # where ensure_kernel installs: a fresh environment of this test's
    from geoguesser.pipeline import ensure_kernel

    barrier.wait()
    try:
        ensure_kernel()
        results.put(None)
    except BaseException:
        results.put(traceback.format_exc())


def _register_together(prefix: Path) -> list[str]:
    """Tracebacks of the registrations that failed, `TOGETHER` of them started at once."""
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(TOGETHER), context.Queue()
    processes = [
        context.Process(target=_register, args=(str(prefix), barrier, results))
        for _ in range(TOGETHER)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join()
    return [outcome for outcome in outcomes if outcome is not None]


def _spec(prefix: Path) -> dict:
    """The kernel `geoguesser` as Jupyter finds it in `prefix`, files and kernel.json."""
    from jupyter_client.kernelspec import KernelSpecManager

    manager = KernelSpecManager(kernel_dirs=[str(prefix / "share" / "jupyter" / "kernels")])
    spec = manager.get_kernel_spec("geoguesser")
    return {"files": sorted(p.name for p in Path(spec.resource_dir).iterdir()), **spec.to_dict()}


def test_kernel_registrations_started_together_all_succeed(tmp_path):
    prefix = tmp_path / "env"
    kernel_json = prefix / "share" / "jupyter" / "kernels" / "geoguesser" / "kernel.json"
    for round_ in range(3):  # a fresh environment, then a registered one, then a stale one
        before = kernel_json.stat().st_mtime_ns if round_ == 1 else None
        failures = _register_together(prefix)
        assert not failures, f"round {round_}: {len(failures)} failed; first:\n{failures[0]}"
        spec = _spec(prefix)
        assert spec["files"] == ["kernel.json", "logo-32x32.png", "logo-64x64.png", "logo-svg.svg"]
        assert spec["argv"][0] == sys.executable and spec["display_name"] == "Python (geoguesser)"
        if round_ == 1:  # a current spec is left as it is
            assert kernel_json.stat().st_mtime_ns == before
        stale = {**json.loads(kernel_json.read_text()), "argv": ["/gone/python", "-m", "x"]}
        if round_ == 1:
            kernel_json.write_text(json.dumps(stale))
    leftovers = [p.name for p in kernel_json.parents[1].iterdir() if p.name != "geoguesser"]
    assert not leftovers  # no staging folder is left behind
