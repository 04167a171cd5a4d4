"""Every notebook, run the way JupyterLab's Run All runs it: all cells queued at once.

JupyterLab 4's Run All (``NotebookActions.runAll`` → ``runCells``) calls ``CodeCell.execute``
for every cell inside one ``Promise.all``: each cell's ``execute_request`` is sent on the shell
channel without waiting for the previous reply. ``OutputArea.execute`` sends
``stop_on_error: true``, except for a cell tagged ``raises-exception`` (``false``), so an error
in an untagged cell makes ipykernel abort the cells queued behind it. This test sends the same
requests the same way to a fresh kernel (ASYNCLAB_SPEED = the course speed, matplotlib's Agg
backend), and checks that:

- every cell not tagged ``raises-exception`` succeeds (not failed, not aborted, not stuck);
- every check cell of a solutions notebook prints its success line (a line starting with ✅);
- the kernel ends idle: a last request is answered, and the kernel says it is idle;
- nothing was left running: no task on the kernel's loop and no thread that was not there
  before the first cell (the kernel's own tasks are new objects per request, so they are
  told apart by their coroutine's code, taken from a snapshot before the run), apart from
  idle worker threads waiting in a thread pool.

nbval and ``python -m asynclab course`` send one cell at a time, so they never see what
happens while later cells wait in the kernel's queue.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import AsyncKernelManager

from asynclab.course import COURSE_SPEED, default_dir, find_notebooks, kernel_config

NOTEBOOKS = find_notebooks(default_dir())

#: A whole notebook takes 2-8 s at the course speed; this is the limit for all its cells
#: together, far above that, so only a kernel that hangs reaches it.
RUN_TIMEOUT = 120.0
#: A kernel that says it is idle while a cell has no reply for this long has lost that cell
#: (JupyterLab shows it as [*] for good). Every notebook cell at speed 20 finishes in well
#: under a second, and a busy kernel is never "idle", so this only catches a lost cell.
LOST_AFTER = 10.0
#: How long the last, empty request may take to be answered by a kernel that is really idle.
IDLE_TIMEOUT = 10.0

CHECK_CALL = re.compile(r"\bawait\s+lesson\d\d\.check_\w+\(")

# Run in the kernel, before the first cell and after the last: a JSON description of the
# tasks on its loop (other than the one running this) and of its live threads. It keeps its
# names out of the learner's namespace.
PROBE = r'''
def __asynclab_probe():
    import asyncio, json, sys, threading
    current = asyncio.current_task()
    tasks = []
    for task in asyncio.all_tasks():
        if task is current:
            continue
        coro = task.get_coro()
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
        where = f"{code.co_filename}:{code.co_qualname}" if code else type(coro).__qualname__
        tasks.append({"where": where, "repr": repr(task)[:300]})
    frames = sys._current_frames()
    threads = []
    for thread in threading.enumerate():
        stack, frame = [], frames.get(thread.ident)
        while frame is not None:
            stack.append((frame.f_code.co_filename, frame.f_code.co_name))
            frame = frame.f_back
        # A thread pool's worker waiting for work (asyncio.to_thread, run_in_executor) runs
        # nothing: it sits in _worker with no _WorkItem.run on its stack.
        pooled = any(f.endswith("concurrent/futures/thread.py") and n == "_worker" for f, n in stack)
        working = any(f.endswith("concurrent/futures/thread.py") and n == "run" for f, n in stack)
        threads.append({"ident": thread.ident, "name": thread.name, "idle_worker": pooled and not working,
                        "where": [f"{f}:{n}" for f, n in stack[:3]]})
    print("ASYNCLAB-PROBE " + json.dumps({"tasks": tasks, "threads": threads}))
__asynclab_probe()
del __asynclab_probe
'''


@dataclass
class Cell:
    """One code cell of the notebook and what the kernel sent back for it."""

    index: int  # among the code cells, from 0
    source: str
    tagged: bool  # raises-exception: JupyterLab sends it with stop_on_error false
    msg_id: str = ""
    reply: dict[str, Any] | None = None
    idle: bool = False
    stdout: str = ""
    errors: list[str] = field(default_factory=list)

    def status(self) -> str:
        """The reply's status (ok, error, aborted), or "" while there is none."""
        return "" if self.reply is None else str(self.reply["content"]["status"])

    def label(self) -> str:
        first = next((line for line in self.source.splitlines() if line.strip()), "")
        return f"code cell {self.index} ({first.strip()[:70]!r})"


async def execute_all(kc: Any, cells: list[Cell]) -> None:
    """Send every cell at once, as Run All does, and wait for each reply and idle status."""
    by_id: dict[str, Cell] = {}
    for cell in cells:
        content = {"code": cell.source, "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": not cell.tagged}
        message = kc.session.msg("execute_request", content)
        kc.shell_channel.send(message)
        cell.msg_id = message["header"]["msg_id"]
        by_id[cell.msg_id] = cell

    deadline = time.monotonic() + RUN_TIMEOUT
    kernel_idle_since: float | None = None

    def done() -> bool:
        return all(cell.reply is not None and cell.idle for cell in cells)

    while not done():
        now = time.monotonic()
        unanswered = [cell for cell in cells if cell.reply is None]
        if now > deadline:
            raise AssertionError(f"Run All did not finish in {RUN_TIMEOUT:g} s; no reply for: "
                                 + "; ".join(cell.label() for cell in unanswered))
        if unanswered and kernel_idle_since is not None and now - kernel_idle_since > LOST_AFTER:
            raise AssertionError(
                f"the kernel has been idle for {LOST_AFTER:g} s but never answered "
                + "; ".join(cell.label() for cell in unanswered)
                + " (JupyterLab shows [*] there for good)")
        while await kc.shell_channel.msg_ready():
            reply = await kc.get_shell_msg(timeout=0)
            answered = by_id.get(reply["parent_header"].get("msg_id", ""))
            if answered is not None:
                answered.reply = reply
        try:
            message = await kc.get_iopub_msg(timeout=0.05)
        except Empty:  # nothing published in the last 50 ms
            continue
        source = by_id.get(message["parent_header"].get("msg_id", ""))
        kind, content = message["msg_type"], message["content"]
        if kind == "status":
            if content["execution_state"] == "idle":
                kernel_idle_since = time.monotonic()
                if source is not None:
                    source.idle = True
            else:
                kernel_idle_since = None
        elif source is not None and kind == "stream" and content["name"] == "stdout":
            source.stdout += content["text"]
        elif source is not None and kind == "error":
            source.errors.append(f"{content['ename']}: {content['evalue']}")


async def probe(kc: Any) -> dict[str, Any]:
    """Run PROBE (outside the history) and return what it printed; fail if the kernel does not answer."""
    msg_id = kc.execute(PROBE, store_history=False)
    reply = await kc.get_shell_msg(timeout=IDLE_TIMEOUT)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = await kc.get_shell_msg(timeout=IDLE_TIMEOUT)
    assert reply["content"]["status"] == "ok", reply["content"]
    printed, idle = "", False
    deadline = time.monotonic() + IDLE_TIMEOUT
    while not idle:
        assert time.monotonic() < deadline, f"the kernel did not report idle within {IDLE_TIMEOUT:g} s"
        message = await kc.get_iopub_msg(timeout=IDLE_TIMEOUT)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        if message["msg_type"] == "stream":
            printed += message["content"]["text"]
        idle = message["msg_type"] == "status" and message["content"]["execution_state"] == "idle"
    line = next(line for line in printed.splitlines() if line.startswith("ASYNCLAB-PROBE "))
    result: dict[str, Any] = json.loads(line.removeprefix("ASYNCLAB-PROBE "))
    return result


def load_cells(path: Path) -> list[Cell]:
    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    return [Cell(index, cell.source, "raises-exception" in cell.get("metadata", {}).get("tags", []))
            for index, cell in enumerate(code)]


async def run_all(path: Path, speed: str) -> tuple[list[str], float]:
    """Run All ``path`` in a fresh kernel; return what went wrong (nothing: []) and the wall seconds."""
    env = {**os.environ, "ASYNCLAB_SPEED": speed, "MPLBACKEND": "Agg"}
    km = AsyncKernelManager(kernel_name="python3", config=kernel_config())
    await km.start_kernel(env=env, cwd=str(path.parent))  # JupyterLab: the notebook's folder
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        before = await probe(kc)
        cells = load_cells(path)
        started = time.monotonic()
        await execute_all(kc, cells)
        wall = time.monotonic() - started
        after = await probe(kc)
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)

    problems = []
    for cell in cells:
        if cell.tagged or cell.status() == "ok":
            continue
        if cell.status() == "aborted":
            problems.append(f"{cell.label()} was aborted: an earlier cell failed (stop_on_error)")
        else:
            content = cell.reply["content"] if cell.reply else {}
            error = cell.errors[0] if cell.errors else f"{content.get('ename')}: {content.get('evalue')}"
            problems.append(f"{cell.label()} failed: {error}")
    if path.parent.name == "solutions":
        for cell in cells:
            ticked = any(line.startswith("✅") for line in cell.stdout.splitlines())
            if CHECK_CALL.search(cell.source) and cell.status() == "ok" and not ticked:
                problems.append(f"{cell.label()} printed no line starting with ✅: {cell.stdout.strip()[:200]!r}")

    kernel_tasks = {task["where"] for task in before["tasks"]}
    left_tasks = [task["repr"] for task in after["tasks"] if task["where"] not in kernel_tasks]
    if left_tasks:
        problems.append(f"{len(left_tasks)} task(s) still on the kernel's loop after Run All: {left_tasks}")
    kernel_threads = {thread["ident"] for thread in before["threads"]}
    left_threads = [f"{thread['name']} at {thread['where']}" for thread in after["threads"]
                    if thread["ident"] not in kernel_threads and not thread["idle_worker"]]
    if left_threads:
        problems.append(f"{len(left_threads)} thread(s) still running after Run All: {left_threads}")
    return problems, wall


def _name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.parent.name == "solutions" else path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[_name(path) for path in NOTEBOOKS])
async def test_run_all_passes_every_untagged_cell_and_leaves_the_kernel_idle_with_nothing_running(
    path: Path,
) -> None:
    speed = os.environ.get("ASYNCLAB_SPEED", f"{COURSE_SPEED:g}")
    problems, wall = await run_all(path, speed)
    print(f"{_name(path)}: every cell queued at once, all answered in {wall:.1f} s at speed {speed}")
    assert not problems, f"Run All of {_name(path)}:\n  " + "\n  ".join(problems)


async def test_run_all_reports_failed_and_aborted_cells_a_missing_tick_and_what_was_left_running(
    tmp_path: Path,
) -> None:
    # A solutions notebook that gets everything wrong at once, so the checks above can fail.
    cells = [
        ("raise ValueError('an exercise stub')", ["raises-exception"]),      # tagged: allowed
        ("class lesson99:\n    @staticmethod\n    async def check_it(f):\n        print('no tick')", []),
        ("await lesson99.check_it(None)", []),                                # no ✅ line
        ("import asyncio, threading, time\n"
         "leaked = asyncio.create_task(asyncio.sleep(60), name='leaked')\n"
         "threading.Thread(target=time.sleep, args=(60,), name='sleeper', daemon=True).start()", []),
        ("await asyncio.to_thread(time.sleep, 0)", []),                       # an idle pool worker: fine
        ("1 / 0", []),                                                        # fails...
        ("print('never runs')", []),                                          # ...so this is aborted
    ]
    notebook = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    for source, tags in cells:
        notebook.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags}))  # type: ignore[no-untyped-call]
    path = tmp_path / "solutions" / "99_everything-wrong-solutions.ipynb"
    path.parent.mkdir()
    nbformat.write(notebook, path)  # type: ignore[no-untyped-call]

    problems, _ = await run_all(path, f"{COURSE_SPEED:g}")

    report = "\n".join(problems)
    assert len(problems) == 5, report
    assert "code cell 2 ('await lesson99.check_it(None)') printed no line starting with ✅: 'no tick'" in report
    assert "code cell 5 ('1 / 0') failed: ZeroDivisionError: division by zero" in report
    assert "code cell 6 (\"print('never runs')\") was aborted" in report
    assert "1 task(s) still on the kernel's loop after Run All: [\"<Task pending name='leaked'" in report
    assert "1 thread(s) still running after Run All: [\"sleeper at" in report
