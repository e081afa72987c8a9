"""The ``facmon`` command. Every subcommand explains itself with ``--help``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from facmon import __version__

if TYPE_CHECKING:
    from config import SiteConfig

log = logging.getLogger("facmon")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
    # pymodbus logs every failed request at ERROR; the collector logs failures once per episode.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    # Alembic narrates every plugin and migration step at INFO; a user needs its warnings.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _cmd_config_check(args: argparse.Namespace) -> int:
    from config.loader import check_file, format_problems
    from facmon.checks import CHECKS

    failed = 0
    for path in args.files:
        problems = check_file(path, checks=CHECKS)
        if problems:
            failed += 1
            print(format_problems(problems), file=sys.stderr)
            n = len(problems)
            print(f"{path}: {n} problem{'s' if n != 1 else ''}", file=sys.stderr)
        else:
            print(f"{path}: OK")
    return 1 if failed else 0


def _cmd_config_sample(args: argparse.Namespace) -> int:
    from config import sample_config

    sys.stdout.write(sample_config())
    return 0


def _load(path: Path) -> SiteConfig | None:
    """The config at ``path`` with every check, or None after printing every problem."""
    from config import ConfigError, load_config
    from facmon.checks import CHECKS

    try:
        return load_config(path, checks=CHECKS)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return None


def _cmd_influx_init(args: argparse.Namespace) -> int:
    from store.influx import init_influx

    cfg = _load(args.config)
    if cfg is None:
        return 2
    if cfg.storage.influxdb is None:
        print(f"{args.config}: storage.influxdb is not configured", file=sys.stderr)
        return 2
    print(init_influx(cfg.storage.influxdb))
    return 0


def _install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def _cmd_run(args: argparse.Namespace) -> int:
    from facmon.runtime import Pipeline, api_tokens, bind_socket

    cfg = _load(args.config)
    if cfg is None:
        return 2
    tokens, generated = api_tokens(cfg)
    host = args.host or cfg.api.host
    port = cfg.api.port if args.port is None else args.port
    sock = bind_socket(host, port)

    async def main() -> None:
        stop = asyncio.Event()
        _install_stop(stop)
        pipeline = Pipeline.build(cfg)
        print(f"facmon {__version__}: {cfg.site.name}, {len(cfg.devices)} devices")
        print(f"  API: http://{host}:{sock.getsockname()[1]}  (docs at /docs)")
        if generated:
            print(f"  token: {generated}  (no token configured; set FACMON_API_TOKEN)")
        await pipeline.serve(sock, tokens, stop)

    asyncio.run(main())
    return 0


def _cmd_modbus_plan(args: argparse.Namespace) -> int:
    import difflib
    import textwrap

    from collector.planner import apply_overrides, device_reads
    from collector.profile import BIT_TABLES, ProfileError, load_profile
    from collector.transport import describe_source
    from config.models import MqttSource

    cfg = _load(args.config)
    if cfg is None:
        return 2
    known = [d.id for d in cfg.devices]
    if args.device not in known:
        close = difflib.get_close_matches(args.device, known, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        listing = ", ".join(known) if known else "none"
        print(
            f"{args.config}: no device '{args.device}'{hint}; devices: {listing}",
            file=sys.stderr,
        )
        return 2
    dev = cfg.device(args.device)
    src = dev.source
    if isinstance(src, MqttSource):
        print(f"device {dev.id} is fed over MQTT: it has no Modbus reads", file=sys.stderr)
        return 2
    try:
        shipped = load_profile(src.profile)
        profile = apply_overrides(shipped, src.overrides)
        reads = device_reads(src, shipped)
    except (ProfileError, FileNotFoundError, ValueError) as e:
        print(f"device {dev.id}: {e}", file=sys.stderr)
        return 2

    prof = profile.name
    if src.overrides:
        prof += f" (overrides: {', '.join(src.overrides)})"
    if src.one_request_per_field:
        limits = "one request per field"
    else:
        limits = (
            f"{src.max_registers_per_read} registers / {src.max_bits_per_read} bits per read, "
            f"gaps of up to {src.max_gap} registers read through"
        )
    print(f"device     {dev.id} ({dev.name})")
    print(f"transport  {describe_source(src)}")
    print(f"profile    {prof}")
    print(f"limits     {limits}")
    print()
    head = f"{'read':>4}  {'fc':>2}  {'table':<8}  {'start':>5}  {'count':>5}  "
    print(f"{head}metrics")
    width = max(40, 100 - len(head))
    for n, rd in enumerate(reads, 1):
        names = ", ".join(reg.metric for reg, _ in rd.registers)
        lines = textwrap.wrap(names, width=width) or [""]
        row = f"{n:>4}  {rd.function_code:>2}  {rd.table:<8}  {rd.address:>5}  {rd.count:>5}  "
        print(row + lines[0])
        for more in lines[1:]:
            print(" " * len(head) + more)
    fields = sum(len(rd.registers) for rd in reads)
    registers = sum(rd.count for rd in reads if rd.table not in BIT_TABLES)
    bits = sum(rd.count for rd in reads if rd.table in BIT_TABLES)
    amount = f"{registers} register{'s' if registers != 1 else ''}"
    if bits:
        amount += f" and {bits} bit{'s' if bits != 1 else ''}"
    print()
    print(
        f"{len(reads)} read{'s' if len(reads) != 1 else ''}, {amount} for {fields} "
        f"field{'s' if fields != 1 else ''} (vs {fields} request{'s' if fields != 1 else ''} "
        "one per field)"
    )
    skipped = [r.metric for r in profile.registers if r.type == "string"]
    if skipped:
        print(f"not polled (text registers): {', '.join(skipped)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from facmon.demo import run_demo

    return run_demo(
        data_dir=Path(args.data_dir),
        host=args.host,
        port=args.port,
        history_days=args.history_days,
        fault_after=args.fault_after,
        seed=args.seed,
    )


_REPORT_SUFFIXES = {".html": "html", ".htm": "html", ".pdf": "pdf", ".csv": "csv", ".json": "json"}


def _cmd_report_monthly(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from alerts.tickets import TicketStore
    from facmon.progress import Progress
    from facmon.runtime import open_store
    from reports import Period, ReportContext
    from reports.monthly import build_monthly, render

    if args.config is not None:
        cfg = _load(args.config)
        if cfg is None:
            return 2
    else:
        from facmon.demo import demo_config

        cfg = demo_config(Path(args.data_dir).resolve())
        print(f"no --config: reporting on the demo site in {cfg.data_dir}", file=sys.stderr)
    try:
        period = Period.parse_month(args.month, ZoneInfo(cfg.site.timezone))
    except ValueError as e:
        print(f"--month: {e}", file=sys.stderr)
        return 2
    out: Path | None = args.out
    fmt = args.format or (_REPORT_SUFFIXES.get(out.suffix.lower()) if out else None) or "html"
    if cfg.storage.backend == "embedded" and not cfg.embedded_path.exists():
        hint = "run 'facmon demo' first" if args.config is None else "has facmon run here?"
        print(f"no readings at {cfg.embedded_path} ({hint})", file=sys.stderr)
        return 2
    try:
        store = open_store(cfg)
    except Exception as e:  # e.g. DuckDB's lock while 'facmon run' or the demo holds the file
        print(f"cannot open the store: {e}", file=sys.stderr)
        return 2
    tickets = TicketStore(cfg.tickets_url)
    bar: Progress | None = None

    def progress(done: int, total: int, note: str) -> None:
        nonlocal bar
        if bar is None:
            bar = Progress(f"Monthly report {period.label}", total, "sections")
        bar.update(done, note)

    try:
        rc = ReportContext(cfg, store, tickets)
        report = build_monthly(rc, period, lang=args.lang or cfg.site.language, progress=progress)
        if bar is not None:
            bar.finish(f"rendering {fmt}")
        rendered = render(report, fmt)
    finally:
        tickets.close()
        store.close()
    if out is None and fmt == "pdf" and sys.stdout.isatty():
        out = Path(rendered.filename)  # a PDF is no use on a terminal
    if out is None:
        sys.stdout.buffer.write(rendered.body)
        sys.stdout.flush()
    else:
        out.write_bytes(rendered.body)
        print(f"wrote {out} ({len(rendered.body):,} bytes)", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="facmon",
        description="facmon: building-facilities monitor. Polls power meters, elevators and "
        "water meters, stores every sample, opens maintenance tickets on faults and serves "
        "readings, tickets and reports over an HTTP API.",
    )
    p.add_argument("--version", action="version", version=f"facmon {__version__}")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    d = sub.add_parser(
        "demo",
        help="run a simulated building end to end (collection, storage, alerts, API)",
        description="Start a simulated building (Modbus servers on loopback for power meters, "
        "elevators and water meters), poll it, store every sample in the embedded store, open "
        "a ticket when the simulator injects an elevator fault, and serve the API. On first "
        "start it back-fills history so reports have data at once. Ctrl-C stops cleanly.",
    )
    d.add_argument("--data-dir", default="facmon-data/demo", help="where the demo keeps its files")
    d.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    d.add_argument("--port", type=int, default=8000, help="API port (default 8000; 0 = any)")
    d.add_argument(
        "--history-days",
        type=int,
        default=430,
        help="days of history to back-fill on first start (default 430: the last 35 every 5 "
        "minutes, older days every 15 minutes with the metrics reports use)",
    )
    d.add_argument(
        "--fault-after",
        type=float,
        default=60.0,
        help="seconds after start when the simulator injects an elevator fault (default 60)",
    )
    d.add_argument("--seed", type=int, default=1, help="simulator random seed")
    d.set_defaults(func=_cmd_demo)

    r = sub.add_parser(
        "run",
        help="run collection, storage, alerts and the API for a site config",
        description="Poll the devices of CONFIG, write every sample through the durable outbox "
        "to the configured store, evaluate alert rules and serve the API until SIGINT/SIGTERM.",
    )
    r.add_argument("config", type=Path, help="site config YAML")
    r.add_argument("--host", default=None, help="override api.host")
    r.add_argument("--port", type=int, default=None, help="override api.port")
    r.set_defaults(func=_cmd_run)

    c = sub.add_parser("config", help="check a site config or print a sample")
    csub = c.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    cc = csub.add_parser(
        "check",
        help="validate site config files; report every problem with file, line and field",
        description="Validate site config files and their device profiles. Prints every "
        "problem as FILE:LINE FIELD: MESSAGE and exits 1 when any file has problems.",
    )
    cc.add_argument("files", nargs="+", type=Path, help="site config YAML files")
    cc.set_defaults(func=_cmd_config_check)
    cs = csub.add_parser(
        "sample",
        help="print a commented sample site config",
        description="Print a commented sample site config that passes 'facmon config check'.",
    )
    cs.set_defaults(func=_cmd_config_sample)

    i = sub.add_parser("influx", help="prepare an InfluxDB target")
    isub = i.add_subparsers(dest="influx_command", metavar="ACTION", required=True)
    ii = isub.add_parser(
        "init",
        help="create the database (1.x) or bucket + DBRP mapping (2.x)",
        description="Prepare the InfluxDB named in the config's storage.influxdb block: on 1.x "
        "create the database, on 2.x create the bucket and the DBRP mapping InfluxQL needs. "
        "Safe to run again.",
    )
    ii.add_argument("--config", required=True, type=Path, help="site config YAML")
    ii.set_defaults(func=_cmd_influx_init)

    m = sub.add_parser("modbus", help="inspect how facmon reads Modbus devices")
    msub = m.add_subparsers(dest="modbus_command", metavar="ACTION", required=True)
    mp = msub.add_parser(
        "plan",
        help="print the reads one poll of a device sends",
        description="Print how facmon reads DEVICE of the site config: its transport, and the "
        "Modbus requests of one poll (function code, table, zero-based start address, count, "
        "and the metrics each carries) after the device's overrides and read limits "
        "(source.max_registers_per_read, max_bits_per_read, max_gap, one_request_per_field). "
        "Sends nothing to the device.",
        epilog="Addresses are zero-based protocol addresses: holding 0 is the register "
        "datasheets often call 40001, input 0 is 30001.",
    )
    mp.add_argument("device", metavar="DEVICE", help="device id from the config")
    mp.add_argument("--config", required=True, type=Path, help="site config YAML")
    mp.set_defaults(func=_cmd_modbus_plan)

    rp = sub.add_parser("report", help="build reports from the stored readings and tickets")
    rsub = rp.add_subparsers(dest="report_command", metavar="REPORT", required=True)
    rm = rsub.add_parser(
        "monthly",
        help="the monthly management report (HTML, PDF, CSV or JSON)",
        description="Build the monthly management report of MONTH for the site of --config: a "
        "portfolio summary, then one page per building with energy and cost, verified savings "
        "(with their fit and uncertainty), elevator availability, water and leaks, maintenance "
        "tickets and data completeness per meter. Without --config it reports on the demo "
        "site's data ('facmon demo' keeps it in facmon-data/demo). Progress goes to stderr, "
        "the report to --out or stdout.",
        epilog="Example: facmon report monthly --month 2024-03 --format pdf --lang en "
        "--config site.yaml --out march.pdf",
    )
    rm.add_argument("--month", required=True, metavar="YYYY-MM", help="the month, e.g. 2024-03")
    rm.add_argument(
        "--format",
        choices=["html", "pdf", "csv", "json"],
        default=None,
        help="output format (default: from the --out suffix, else html)",
    )
    rm.add_argument(
        "--lang", choices=["zh-CN", "en"], default=None, help="language (default: site.language)"
    )
    rm.add_argument(
        "--out",
        type=Path,
        default=None,
        help="file to write (default: stdout; a PDF for a terminal goes to "
        "SITE-monthly-MONTH-LANG.pdf)",
    )
    rm.add_argument("--config", type=Path, default=None, help="site config YAML (default: demo)")
    rm.add_argument(
        "--data-dir",
        default="facmon-data/demo",
        help="where the demo keeps its files, when no --config is given",
    )
    rm.set_defaults(func=_cmd_report_monthly)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
