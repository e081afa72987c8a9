"""The site a facmon command works on: ``--config FILE``, or else the demo site.

Most commands that only read a site (on-call, maintenance, notify, report, grafana) run without
a config on the demo site, so a first look needs no YAML. They share the arguments and the
loading here so they say the same thing and fail the same way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config import SiteConfig

DEMO_DATA_DIR = "facmon-data/demo"
"""Where ``facmon demo`` keeps its files unless told otherwise."""


def add_group(
    sub: Any,
    name: str,
    *,
    summary: str,
    description: str | None = None,
    metavar: str = "ACTION",
) -> Any:
    """Register ``facmon NAME ACTION`` on the facmon command's subparsers ``sub`` and return the
    subparsers its actions go on; the action chosen is ``args.<name>_command``."""
    group = sub.add_parser(name, help=summary, description=description)
    return group.add_subparsers(dest=f"{name}_command", metavar=metavar, required=True)


def add_site_args(parser: argparse.ArgumentParser, *, data_dir: bool = True) -> None:
    """Add ``--config`` (default: the demo site) and, with ``data_dir``, ``--data-dir`` (where
    the demo's readings and tickets are, for commands that read them)."""
    parser.add_argument(
        "--config", type=Path, default=None, help="site config YAML (default: the demo site)"
    )
    if data_dir:
        parser.add_argument(
            "--data-dir",
            default=DEMO_DATA_DIR,
            help="where the demo keeps its files, when no --config is given",
        )


def load_site(path: Path) -> SiteConfig | None:
    """The config at ``path`` with every check, or None after printing every problem."""
    from config import ConfigError, load_config
    from facmon.checks import CHECKS

    try:
        return load_config(path, checks=CHECKS)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return None


def site_from_args(args: argparse.Namespace, what: str) -> SiteConfig | None:
    """The site of ``--config`` (None after printing its problems: exit 2), or else the demo
    site in ``--data-dir``, saying on stderr ``no --config: <what> the demo site in <dir>``
    (``what`` e.g. "on-call of") so nobody mistakes demo answers for their own site's."""
    if args.config is not None:
        return load_site(args.config)
    from facmon.demo import demo_config

    cfg = demo_config(Path(getattr(args, "data_dir", DEMO_DATA_DIR)).resolve())
    where = f" in {cfg.data_dir}" if hasattr(args, "data_dir") else ""
    print(f"no --config: {what} the demo site{where}", file=sys.stderr)
    return cfg
