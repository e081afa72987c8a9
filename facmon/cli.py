"""The ``facmon`` command. Every subcommand explains itself with ``--help``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from facmon import __version__
from facmon.cliargs import DEMO_DATA_DIR, add_group, add_site_args, load_site, site_from_args

log = logging.getLogger("facmon")


def _setup_logging(level: str, fmt: str | None = None) -> None:
    from facmon.logs import resolve_format, setup_logging

    try:
        chosen = resolve_format(fmt)
    except ValueError as e:
        raise SystemExit(f"facmon: {e}") from None
    setup_logging(level, chosen)


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
            for line in _default_rule_lines(path):
                print(line)
    return 1 if failed else 0


def _default_rule_lines(path: Path) -> list[str]:
    """Which shipped default rules a valid config runs, on how many devices."""
    from alerts.default_rules import default_rule_use
    from config import load_config
    from facmon.checks import CHECKS

    out = []
    for use in default_rule_use(load_config(path, checks=CHECKS)):
        n = len(use.devices)
        what = (
            "replaced by the site's rule of that id"
            if use.replaced
            else f"{n} device{'s' if n != 1 else ''}"
        )
        out.append(f"  default rule {use.rule.id} ({use.rule.kind}): {what}")
    return out


def _cmd_config_sample(args: argparse.Namespace) -> int:
    from config import sample_config

    sys.stdout.write(sample_config())
    return 0


def _cmd_influx_init(args: argparse.Namespace) -> int:
    from store.influx import init_influx

    cfg = load_site(args.config)
    if cfg is None:
        return 2
    if cfg.storage.influxdb is None:
        print(f"{args.config}: storage.influxdb is not configured", file=sys.stderr)
        return 2
    print(init_influx(cfg.storage.influxdb))
    return 0


def _cmd_influx_summarise(args: argparse.Namespace) -> int:
    from facmon.progress import Progress
    from store.base import StoreError
    from store.influx import InfluxStore

    cfg = load_site(args.config)
    if cfg is None:
        return 2
    settings = cfg.storage.influxdb
    if settings is None:
        print(f"{args.config}: storage.influxdb is not configured", file=sys.stderr)
        return 2
    if not settings.counter_summaries:
        print(f"{args.config}: storage.influxdb.counter_summaries is off", file=sys.stderr)
        return 2
    store = InfluxStore(settings)  # reads and writes summaries; claims no writer part
    try:
        for metric in sorted(cfg.report_counters):
            bar = Progress(f"Summarising {metric}", 1, "days")

            def progress(done: int, total: int, bar: Progress = bar) -> None:
                bar.total = total
                bar.update(done, f"{done}/{total} days")

            days, since = store.summarise_history(metric, progress)
            if since is None:
                print(f"{metric}: nothing stored before the summaries began")
            else:
                bar.finish(f"{days} days")
                print(
                    f"{metric}: {days} UTC days summarised; reports read summaries from "
                    f"{since:%Y-%m-%d %H:%M} UTC on"
                )
    except StoreError as e:
        print(f"InfluxDB: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


def _install_stop(stop: asyncio.Event, reload: asyncio.Event | None = None) -> None:
    """SIGINT and SIGTERM stop cleanly (collector, then the outbox flushed to the store, then
    the stores closed; exit status 0); SIGHUP sets ``reload``, or is ignored without one
    (rather than killing the process, SIGHUP's default)."""
    loop = asyncio.get_running_loop()

    def stopping(sig: signal.Signals) -> None:
        if stop.is_set():
            log.info("%s: already stopping", sig.name)
        else:
            log.info("%s: stopping", sig.name)
        stop.set()

    def reloading() -> None:
        if reload is None:
            log.warning("SIGHUP: this process has no config file to reload; ignored")
        else:
            log.info("SIGHUP: reloading the config")
            reload.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping, sig)
    if hasattr(signal, "SIGHUP"):
        loop.add_signal_handler(signal.SIGHUP, reloading)


def _cmd_run(args: argparse.Namespace) -> int:
    from facmon.runtime import ROLES, Pipeline, api_tokens, bind_socket

    cfg = load_site(args.config)
    if cfg is None:
        return 2
    roles = frozenset(ROLES if args.role == "all" else (args.role,))
    if roles != frozenset(ROLES) and cfg.storage.backend == "embedded":
        print(
            f"facmon run --role {args.role}: the embedded store can be open in one process "
            "only; a split into collector and api processes needs storage.backend influxdb",
            file=sys.stderr,
        )
        return 2
    tokens, generated = api_tokens(cfg)
    host = args.host or cfg.api.host
    port = cfg.api.port if args.port is None else args.port
    sock = bind_socket(host, port)

    async def main() -> None:
        stop, reload = asyncio.Event(), asyncio.Event()
        _install_stop(stop, reload)
        pipeline = Pipeline.build(cfg, config_path=args.config.resolve(), roles=roles)
        doing = "" if args.role == "all" else f" (role {args.role})"
        print(f"facmon {__version__}: {cfg.site.name}, {len(cfg.devices)} devices{doing}")
        print(f"  API: http://{host}:{sock.getsockname()[1]}  (docs at /docs)")
        if generated:
            print(f"  token: {generated}  (no token configured; set FACMON_API_TOKEN)")
        await pipeline.serve(sock, tokens, stop, reload=reload)

    _run_event_loop(main())
    return 0


def _run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run`` on uvloop when it is installed (a runtime dependency except on Windows):
    a Modbus request costs the collector ~30% less CPU there; asyncio's own loop otherwise."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def _cmd_ingest(args: argparse.Namespace) -> int:
    import threading

    from facmon.ingest import WORKER_ID, run_ingest

    path = args.config_opt or args.config
    if path is None:
        print("facmon ingest: give the site config (CONFIG or --config FILE)", file=sys.stderr)
        return 2
    if not WORKER_ID.match(args.worker):
        print(
            f"facmon ingest: --worker {args.worker!r}: 1-8 letters, digits, '_' or '-'",
            file=sys.stderr,
        )
        return 2
    cfg = load_site(path)
    if cfg is None:
        return 2
    if cfg.ingest is None:
        print(f"{path}: no 'ingest' block: nothing to consume", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # no reload: restart the worker instead
    return run_ingest(cfg, args.worker, stop, status_file=args.status_file)


def _cmd_modbus_plan(args: argparse.Namespace) -> int:
    import difflib
    import textwrap

    from collector.planner import apply_overrides, device_reads
    from collector.profile import BIT_TABLES, ProfileError, load_profile
    from collector.transport import describe_source
    from config.models import MqttSource

    cfg = load_site(args.config)
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
        escalate_after=args.escalate_after,
        mqtt_broker=args.mqtt_broker,
    )


_REPORT_SUFFIXES = {".html": "html", ".htm": "html", ".pdf": "pdf", ".csv": "csv", ".json": "json"}


def _cmd_report_monthly(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from alerts.tickets import TicketStore
    from facmon.progress import Progress
    from facmon.runtime import open_store
    from reports import Period, ReportContext
    from reports.monthly import build_monthly, render

    cfg = site_from_args(args, "reporting on")
    if cfg is None:
        return 2
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
    tickets = TicketStore.for_site(cfg)
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


def _cmd_oncall(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from facmon import oncall_view

    cfg = site_from_args(args, "on-call of")
    if cfg is None:
        return 2
    known = [r.id for r in cfg.oncall.rotations]
    if args.rotation is not None and args.rotation not in known:
        listing = ", ".join(known) if known else "none"
        print(f"no rotation '{args.rotation}'; rotations: {listing}", file=sys.stderr)
        return 2
    if not 1 <= getattr(args, "days", 1) <= 366:
        print("--days: must be 1..366", file=sys.stderr)
        return 2
    tz = ZoneInfo(cfg.site.timezone)
    try:
        at = oncall_view.parse_when(args.at, tz, datetime.now(UTC))
    except ValueError as e:
        print(f"--{'at' if args.oncall_command == 'who' else 'from'}: {e}", file=sys.stderr)
        return 2
    view = oncall_view.View(cfg, tz, at, sys.stdout)
    if args.oncall_command == "who":
        return oncall_view.who(view, args.rotation)
    if args.oncall_command == "schedule":
        return oncall_view.schedule(view, args.days, args.rotation)
    return oncall_view.gaps(view, args.days, args.rotation)


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
        "a ticket when the simulator traps a passenger in a lift, page the technician on call "
        "(and the supervisor when nobody acknowledges), and serve the API. On first "
        "start it back-fills history so reports have data at once. Ctrl-C stops cleanly.",
    )
    d.add_argument("--data-dir", default=DEMO_DATA_DIR, help="where the demo keeps its files")
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
    d.add_argument(
        "--escalate-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long the P1 chain waits for an acknowledgement before paging the supervisor "
        "(default: the demo site's 2 minutes)",
    )
    d.add_argument(
        "--mqtt-broker",
        default=None,
        metavar="HOST:PORT",
        help="broker the simulated MQTT sensors publish to and facmon subscribes at (default: "
        "a mosquitto the demo starts on loopback)",
    )
    d.set_defaults(func=_cmd_demo)

    r = sub.add_parser(
        "run",
        help="run collection, storage, alerts and the API for a site config",
        description="Poll the devices of CONFIG, write every sample through the durable outbox "
        "to the configured store, evaluate alert rules and serve the API until SIGINT/SIGTERM "
        "(which flush the outbox to the store before exiting). SIGHUP reloads CONFIG: "
        "devices, rules and MQTT settings apply at once without losing samples; an invalid "
        "file is logged and the running config stays.",
    )
    r.add_argument("config", type=Path, help="site config YAML")
    r.add_argument("--host", default=None, help="override api.host")
    r.add_argument("--port", type=int, default=None, help="override api.port")
    r.add_argument(
        "--role",
        choices=["all", "collector", "api"],
        default="all",
        help="what this process does (default all). collector: poll the devices, store, "
        "evaluate alerts on that stream and page, serving only /health and /metrics; api: "
        "serve the API and console from the store and ticket database, e.g. several of them "
        "behind a proxy. A split needs a store and ticket database other processes can "
        "reach (InfluxDB, PostgreSQL)",
    )
    r.set_defaults(func=_cmd_run)

    ing = sub.add_parser(
        "ingest",
        help="central role: store the batches edge facmons publish to a broker",
        description="Consume the samples that edge facmons (site files with an 'uplink' block) "
        "publish to the central broker, through the MQTT shared subscription "
        "$share/<ingest.group>/<ingest.topic>, and write them through a durable outbox to the "
        "configured store (storage: InfluxDB, or embedded for small setups). Start several "
        "workers with different --worker ids (on one host or several) and the broker splits the "
        "messages between them. A message is acknowledged only once its samples are on disk, "
        "so a killed worker loses nothing: after its restart (same --worker id) it gets what "
        "the broker held for it. No alert engine runs here (alerts run at the edges) and no "
        "API (run 'facmon run' on the same site file for the API and reports). SIGINT/SIGTERM "
        "stop cleanly.",
        epilog="Example: facmon ingest central.yaml --worker 2   (see OPERATIONS.md, 'Several "
        "buildings')",
    )
    ing.add_argument("config", type=Path, nargs="?", default=None, help="site config YAML")
    ing.add_argument(
        "--config",
        dest="config_opt",
        type=Path,
        default=None,
        metavar="FILE",
        help="site config YAML (instead of CONFIG)",
    )
    ing.add_argument(
        "--worker",
        default="1",
        metavar="ID",
        help="this worker's id in the group (default 1): appended to ingest.client_id and "
        "naming its files under <data_dir>/ingest-<ID>/; keep it stable across restarts",
    )
    ing.add_argument(
        "--status-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the worker's figures (messages, samples, bad messages, outbox depth) as "
        "JSON to PATH every second, for monitoring",
    )
    ing.set_defaults(func=_cmd_ingest)
    for sp in (d, r, ing):
        sp.add_argument(
            "--log-format",
            choices=["text", "json"],
            default=None,
            help="log lines as text (default) or one JSON object per line (time, level, "
            "logger, message and fields such as device); env FACMON_LOG_FORMAT",
        )

    st = sub.add_parser(
        "status",
        help="show the health of every component of a running facmon",
        description="Ask a running facmon (its GET /health) how each component is doing: "
        "the API, the Modbus collector and each device that is down, MQTT, the store and its "
        "outbox, the alert engine, the ticket database and the config (last reload). Exits 0 "
        "when everything is up (or not configured), 1 otherwise, so it can serve as a health "
        "check.",
        epilog="Example: facmon status --config site.yaml   (the API address from the "
        "config's api block)",
    )
    st.add_argument("--url", default=None, help="the API's base URL, e.g. http://127.0.0.1:8000")
    st.add_argument(
        "--config",
        type=Path,
        default=None,
        help="site config YAML to take the API address from (api.host, api.port) when no "
        "--url is given; default http://127.0.0.1:8000",
    )
    st.add_argument(
        "--token-env",
        default="FACMON_API_TOKEN",
        metavar="NAME",
        help="environment variable holding a bearer token, sent when set (default "
        "FACMON_API_TOKEN); /health itself needs none, a proxy in front of it may",
    )
    st.add_argument("--json", action="store_true", help="print the whole status as JSON")
    st.set_defaults(func=_cmd_status)

    csub = add_group(sub, "config", summary="check a site config or print a sample")
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

    isub = add_group(sub, "influx", summary="prepare an InfluxDB target, summarise its history")
    ii = isub.add_parser(
        "init",
        help="create the database (1.x) or bucket + DBRP mapping (2.x)",
        description="Prepare the InfluxDB named in the config's storage.influxdb block: on 1.x "
        "create the database, on 2.x create the bucket and the DBRP mapping InfluxQL needs. "
        "Safe to run again.",
    )
    ii.add_argument("--config", required=True, type=Path, help="site config YAML")
    ii.set_defaults(func=_cmd_influx_init)
    isu = isub.add_parser(
        "summarise",
        help="write counter summaries for readings stored before facmon wrote them",
        description="Reports on InfluxDB read 15-minute counter summaries that facmon writes "
        "beside the samples. Readings stored by an older facmon have none, and reports read "
        "them raw (correct, but a year of minute data of hundreds of meters takes minutes). "
        "This reads that history a day at a time, writes its summaries and then tells reports "
        "to use them. Safe to run again and to interrupt; facmon may keep running meanwhile.",
    )
    isu.add_argument("--config", required=True, type=Path, help="site config YAML")
    isu.set_defaults(func=_cmd_influx_summarise)

    msub = add_group(sub, "modbus", summary="inspect how facmon reads Modbus devices")
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

    rsub = add_group(
        sub,
        "report",
        summary="build reports from the stored readings and tickets",
        metavar="REPORT",
    )
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
    add_site_args(rm)
    rm.set_defaults(func=_cmd_report_monthly)

    osub = add_group(
        sub,
        "oncall",
        summary="who is on call, the on-call schedule and its coverage gaps",
        description="Answer on-call questions from the oncall section of the site config: "
        "rotations hand off daily or weekly at a local time, overrides beat rotations, and "
        "when neither covers a time the fallback is paged. Times are in the site's time zone.",
    )
    ow = osub.add_parser(
        "who",
        help="who is on call now (or at --at), from which source, until when, and how to "
        "reach them",
        description="Print who is paged at a time: the person, whether an override, a "
        "rotation or the fallback puts them on call, since and until when (local time), who "
        "comes next, and their phone, e-mail and notification channels. Exits 1 when nobody "
        "is on call.",
        epilog="Example: facmon oncall who --at '2026-12-24 22:00' --config site.yaml",
    )
    ow.add_argument(
        "--at",
        default="now",
        metavar="TIME",
        help="now (default), HH:MM today, YYYY-MM-DD or 'YYYY-MM-DD HH:MM' in the site's time "
        "zone, or ISO 8601 with an offset",
    )
    osc = osub.add_parser(
        "schedule",
        help="list the shifts of the next days",
        description="List who is on call from --from for --days days, one block per rotation "
        "(or only --rotation): each shift with its start, end, source (override, rotation, "
        "fallback or nobody) and person.",
    )
    og = osub.add_parser(
        "gaps",
        help="warn about times no rotation or override covers",
        description="Find the times in the next --days days that no override or rotation "
        "covers, per rotation, and say whether the fallback is paged then. Exits 1 when a gap "
        "has nobody to page (no oncall.fallback), so it can run from cron or CI to warn in "
        "advance.",
    )
    for sp, days in ((osc, 7), (og, 14)):
        sp.add_argument(
            "--days", type=int, default=days, help=f"how many days ahead (default {days})"
        )
        sp.add_argument(
            "--from",
            dest="at",
            default="now",
            metavar="TIME",
            help="start: now (default), HH:MM, YYYY-MM-DD or 'YYYY-MM-DD HH:MM' local time",
        )
    for sp in (ow, osc, og):
        sp.add_argument("--rotation", default=None, metavar="R", help="only this rotation (its id)")
        add_site_args(sp)
        sp.set_defaults(func=_cmd_oncall)

    from dashboards.cli import add_parser as add_grafana_parser
    from facmon.maintenance_cli import add_parser as add_maintenance_parser
    from facmon.notify_cli import add_parser as add_notify_parser

    add_grafana_parser(sub)
    add_maintenance_parser(sub)
    add_notify_parser(sub)
    return p


def _cmd_status(args: argparse.Namespace) -> int:
    import os

    from facmon.status import run_status, url_from_config

    if args.url:
        url = args.url
    elif args.config is not None:
        try:
            url = url_from_config(args.config)
        except (OSError, ValueError) as e:
            print(f"{args.config}: cannot read the api block: {e}", file=sys.stderr)
            return 2
    else:
        url = "http://127.0.0.1:8000"
    token = os.environ.get(args.token_env, "").strip() or None
    return run_status(url, token, args.json, sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level, getattr(args, "log_format", None))
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
