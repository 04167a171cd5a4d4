"""Command line: ``python -m asynclab demo | course | lab | serve``."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from asynclab.clock import MAX_SPEED, MIN_SPEED, check_speed, speed_error


def _speed(raw: str) -> float:
    try:
        return check_speed(float(raw))
    except ValueError:  # not a number, or out of range
        raise argparse.ArgumentTypeError(
            f"speed must be a number from {MIN_SPEED:g} to {MAX_SPEED:,.0f} (simulated seconds per wall second),"
            f" got {raw!r}"
        ) from None


def _host(raw: str) -> str:
    from asynclab.serving import check_host

    try:
        return check_host(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(raw: str) -> int:
    if not re.fullmatch(r"\d{1,5}", raw) or int(raw) > 65535:
        raise argparse.ArgumentTypeError(f"port must be an int from 0 (any free port) to 65535, got {raw!r}")
    return int(raw)


def _jobs(raw: str) -> int:
    if not re.fullmatch(r"\d{1,3}", raw) or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"jobs must be an int >= 1 (notebooks run at once), got {raw!r}")
    return int(raw)


def _lesson(raw: str) -> str:
    if not re.fullmatch(r"\d{1,2}", raw):
        raise argparse.ArgumentTypeError(f"lesson numbers are like 00 or 2, got {raw!r}")
    return raw.zfill(2)


def _fail(command: str, message: str) -> int:
    """A usage error in one line, no traceback: exit status 2, as argparse gives."""
    print(f"python -m asynclab {command}: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asynclab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="the seed example, sequential vs concurrent, with a timeline PNG")
    demo.add_argument("--speed", type=_speed, default=None,
                      help="simulated seconds per wall second (default: ASYNCLAB_SPEED or 1)")
    demo.add_argument("--out", default="asynclab-demo.png", help="where to save the timeline PNG")

    course = commands.add_parser("course", help="run every notebook headless and print a table")
    course.add_argument("--speed", type=_speed, default=20.0, help="simulated seconds per wall second (20)")
    course.add_argument("--only", nargs="+", type=_lesson, default=(), metavar="NN", help="lesson numbers, e.g. 00 02")
    course.add_argument("--write", action="store_true", help="store the outputs in the notebooks")
    course.add_argument("--jobs", type=_jobs, default=None,
                        help="notebooks run at once (default: one more than the cores)")
    course.add_argument("--no-rerun", dest="rerun", action="store_false",
                        help="fail a notebook at once when a timing claim fails beside the others (default: run it "
                             "again alone at the end, and say so)")

    lab = commands.add_parser(
        "lab", allow_abbrev=False, help="open the lessons in JupyterLab (other options go to jupyter lab)",
        epilog="Any other option goes to jupyter lab, e.g. --no-browser --port 8890 --ServerApp.token=...; "
               "as root add --allow-root.")
    lab.add_argument("--speed", type=_speed, default=1.0, help="simulated seconds per wall second (1)")

    serve = commands.add_parser("serve", help="serve the services over HTTP with uvicorn (OpenAPI docs at /docs)")
    serve.add_argument("--host", type=_host, default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    serve.add_argument("--port", type=_port, default=8000, help="TCP port (default 8000; 0: any free port)")
    serve.add_argument("--speed", type=_speed, default=None,
                       help="simulated seconds per wall second (default: ASYNCLAB_SPEED or 1)")
    serve.add_argument("--access-log", action="store_true", help="log one line per request (off: it costs CPU)")

    args, jupyter_args = parser.parse_known_args(argv)
    if jupyter_args and args.command != "lab":  # only `lab` passes options on (to JupyterLab)
        parser.error(f"unrecognized arguments: {' '.join(jupyter_args)}")
    if (problem := speed_error()) is not None:  # every command runs on the clock, or starts kernels that do
        return _fail(args.command, problem)
    if args.command == "serve":
        return _serve(args.host, args.port, args.speed, args.access_log)
    if args.command == "demo":
        from asynclab.demo import main as demo_main

        return demo_main(args.speed, args.out)
    if args.command == "course":
        from asynclab.course import default_dir, find_notebooks
        from asynclab.course import main as course_main

        directory = default_dir()
        found = find_notebooks(directory) if directory.is_dir() else []
        if not found:
            if args.only:
                return _fail("course", f"--only {' '.join(args.only)}: there are no notebooks in {directory}")
            print("no notebooks yet: running the demo instead")
            from asynclab.demo import main as demo_main

            return demo_main(args.speed, "asynclab-demo.png")
        lessons = sorted({path.name[:2] for path in found})
        missing = [number for number in args.only if number not in lessons]
        if missing:
            return _fail("course", f"--only: no lesson numbered {', '.join(missing)} in {directory};"
                                   f" the lessons are {', '.join(lessons)}")
        return course_main(args.only, args.speed, args.write, args.jobs, args.rerun)
    if args.command == "lab":
        from asynclab.lab import main as lab_main

        return lab_main(args.speed, jupyter_args)
    parser.error(f"unknown command {args.command!r}")


def _serve(host: str, port: int, speed: float | None, access_log: bool = False) -> int:
    """Run uvicorn in the foreground until Ctrl-C."""
    import uvicorn

    from asynclab.clock import get_speed, set_speed
    from asynclab.server import create_app
    from asynclab.serving import bind, is_loopback, server_config

    if speed is not None:
        set_speed(speed)
    try:
        sock = bind(host, port)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    url = f"http://{host}:{sock.getsockname()[1]}"
    print(f"asynclab services on {url} (docs: {url}/docs), speed {get_speed():g}; Ctrl-C to stop", flush=True)
    if not is_loopback(host):
        print(f"note: listening on {host}, reachable from other machines", flush=True)
    try:
        uvicorn.Server(server_config(create_app(), log_level="info", access_log=access_log)).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shuts down cleanly on Ctrl-C, then raises the signal again
        return 130  # the shell's code for "ended by SIGINT", without a traceback after uvicorn's goodbye
    return 0


if __name__ == "__main__":
    sys.exit(main())
