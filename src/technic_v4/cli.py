"""``technic`` command line: thin commands over the same functions as the Python API."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from technic_v4 import __version__, fsio

TABLE_COLUMNS = ("Rank", "Symbol", "Name", "Sector", "Close", "Return21D", "RSI14", "RSRating",
                 "TechRating", "Signal", "Entry", "Stop", "Target", "PositionSize")
FORMATS = ("table", "csv", "json", "parquet")


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _error_text(e: Exception) -> str:
    """One line naming the field; for a screen expression, the source line with carets under
    the fault after it."""
    text = _one_line(str(e))
    caret = getattr(e, "caret", None)
    if isinstance(caret, str):
        text += "\n" + "\n".join("  " + line for line in caret.split("\n"))
    return text


class _Technic(click.Group):
    """The ``technic`` group: every command's errors become one line on stderr, exit status 1.

    Errors technic raises on purpose (:mod:`technic_v4.errors`) already say what to fix; anything
    else is a bug or an environment fault, shown as one line with a pointer to ``--debug``, which
    shows the traceback instead.
    """

    def invoke(self, ctx: click.Context) -> Any:
        from technic_v4.errors import TechnicError

        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except TechnicError as e:
            if ctx.params.get("debug"):
                raise
            raise click.ClickException(_error_text(e)) from e
        except Exception as e:
            if ctx.params.get("debug"):
                raise
            raise click.ClickException(f"{type(e).__name__}: {_one_line(str(e))} (run with "
                                       "--debug for the traceback)") from e


def _output_path(ctx: click.Context, param: click.Parameter, value: Path | None
                 ) -> Path | None:
    """Refuse an output file whose folder is missing or read-only before any work is done."""
    if value is None:
        return None
    folder = value.parent
    if not folder.is_dir():
        raise click.ClickException(f"{param.opts[0]} {value}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise click.ClickException(f"{param.opts[0]} {value}: folder {folder} is not writable")
    return value


def _report_dir(ctx: click.Context, param: click.Parameter, value: Path | None
                ) -> Path | None:
    """Refuse a report folder that is a file or cannot be created before any work is done."""
    if value is None:
        return None
    from technic_v4.backtest.report import check_directory
    from technic_v4.errors import ConfigError

    try:
        return check_directory(value)
    except ConfigError as e:
        raise click.ClickException(f"--report {str(e).removeprefix('report: ')}") from e


@click.group(cls=_Technic, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="technic")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
@click.option("--debug", is_flag=True, help="Show the traceback of an error instead of one line.")
def main(verbose: int, debug: bool) -> None:
    """technic: scan the whole US market from a local store, with TA-Lib-exact indicators."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--max-symbols", "-n", type=int, default=None,
              help="First N listings by market cap after the smart filter (default: all).")
@click.option("--sector", "sectors", multiple=True, help="GICS sector (repeatable).")
@click.option("--industry", "industries", multiple=True, help="GICS industry (repeatable).")
@click.option("--type", "types", multiple=True,
              help="Listing type (repeatable; default: Common Stock and ADR).")
@click.option("--symbols", help="Comma-separated tickers to scan.")
@click.option("--top", "top_n", type=int, default=None, help="Keep the N best rows.")
@click.option("--as-of", "as_of", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Point-in-time scan at this session (YYYY-MM-DD).")
@click.option("--min-rating", type=float, default=0.0, show_default=True,
              help="Minimum TechRating.")
@click.option("--only-tradeable", is_flag=True, help="Only Long/Strong Long rows with a position.")
@click.option("--allow-shorts", is_flag=True, help="Emit Short/Strong Short signals and plans.")
@click.option("--lookback", "lookback_days", default=None, metavar="N|all",
              help="Bars (sessions) per symbol (default 300; all = every stored bar).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              callback=_output_path, help="Write to this file instead of stdout (parquet needs it).")
@click.option("--rows", type=int, default=30, show_default=True,
              help="Rows shown by the table format (0 = all).")
@click.option("--stats", "show_stats", is_flag=True, help="Print the scan statistics as JSON "
              "on stderr.")
@click.option("--where", help='Keep rows where this screen holds, e.g. "close > sma(close,50) '
              'and RSI14 < 30" (README "Screen language").')
@click.option("--column", "columns", multiple=True, metavar="NAME=EXPR",
              help="An extra output column (repeatable), e.g. --column 'Gap=open/close[1]-1'.")
@click.option("--sort", "sort_by", help="Sort by this expression or --column name instead of "
              "TechRating (descending).")
@click.option("--preset", help="A preset screen (technic screens list); combined with --where "
              "by and.")
@click.option("--near-miss", "near_miss", type=int, default=0, show_default=True,
              help="Also keep rows failing at most K where clauses (column Failed).")
def scan(max_symbols: int | None, sectors: tuple[str, ...], industries: tuple[str, ...],
         types: tuple[str, ...], symbols: str | None, top_n: int | None,
         as_of: dt.datetime | None, min_rating: float, only_tradeable: bool, allow_shorts: bool,
         lookback_days: str | None, fmt: str, output: Path | None, rows: int,
         show_stats: bool, where: str | None, columns: tuple[str, ...], sort_by: str | None,
         preset: str | None, near_miss: int) -> None:
    """Scan the market and print a ranked table of trade candidates."""
    from technic_v4.scanner_core import ScanConfig, run_scan

    kw: dict[str, Any] = {"max_symbols": max_symbols, "top_n": top_n,
                          "min_tech_rating": min_rating, "only_tradeable": only_tradeable,
                          "allow_shorts": allow_shorts, "where": where, "sort_by": sort_by,
                          "preset": preset, "near_miss": near_miss}
    if columns:
        kw["columns"] = _columns(columns)
    if sectors:
        kw["sectors"] = sectors
    if industries:
        kw["industries"] = industries
    if types:
        kw["types"] = types
    if symbols:
        kw["symbols"] = [s for s in symbols.split(",") if s.strip()]
    if as_of is not None:
        kw["as_of_date"] = as_of.date()
    if lookback_days is not None:
        kw["lookback_days"] = _lookback(lookback_days)
    if fmt == "parquet" and output is None:
        raise click.UsageError("--format parquet needs --output FILE")
    config = ScanConfig(**kw)
    with _Progress() as prog:
        df, msg = run_scan(config, progress=prog.update)
    _write(df, fmt, output, rows)
    click.echo(msg, err=True)
    if show_stats:
        click.echo(json.dumps(df.attrs["stats"], indent=2, default=str), err=True)


def _lookback(text: str) -> int | None:
    """``--lookback``: a number of sessions, or ``all`` (every stored bar: None)."""
    if text.strip().lower() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise click.BadParameter(f"a number of sessions or 'all', got {text!r}",
                                 param_hint="--lookback") from None


def _columns(specs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in specs:
        name, eq, expr = spec.partition("=")
        if not eq or not name.strip():
            raise click.ClickException(f"--column {spec!r}: expected NAME=EXPR, e.g. "
                                       "--column 'Gap=open/close[1]-1'")
        out[name.strip()] = expr
    return out


class _Progress:
    """A multi-stage progress bar on stderr (one line per stage), shown only once a scan has
    run for over a second, so warm scans print nothing but their result."""

    DELAY_S = 1.0

    def __init__(self) -> None:
        import time

        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._clock = time.monotonic
        self._t0 = self._clock()
        self._progress = Progress(TextColumn("{task.description:<13}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(),
                                  TimeRemainingColumn(), console=Console(stderr=True),
                                  transient=True)
        self._started = False
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._progress.stop()

    def update(self, stage: str, done: int, total: int) -> None:
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=max(total, 1))
        self._progress.update(self._tasks[stage], completed=done, total=max(total, 1))
        if not self._started and self._clock() - self._t0 > self.DELAY_S:
            self._progress.start()
            self._started = True


def _write(df: Any, fmt: str, output: Path | None, rows: int) -> None:
    from technic_v4 import formats

    if fmt == "csv":
        text = formats.to_csv(df)
    elif fmt == "json":
        text = formats.to_json(df)
    elif fmt == "parquet":
        assert output is not None
        with fsio.atomic_file(output) as f:
            df.to_parquet(f, index=False)
        click.echo(f"wrote {len(df)} rows to {output}", err=True)
        return
    else:
        text = _table(df, rows)
    if output is not None:
        fsio.write_text(output, text)
        click.echo(f"wrote {len(df)} rows to {output}", err=True)
    else:
        click.echo(text)


def _table(df: Any, rows: int) -> str:
    from rich.console import Console
    from rich.table import Table

    from technic_v4.pipeline import COLUMNS

    show = df if rows == 0 else df.head(rows)
    t = Table(show_lines=False, header_style="bold")
    # A screen's columns follow the usual ones: the user's, then Failed and Matched if any.
    extra = [c for c in df.columns if c not in COLUMNS and c != "Failed"]
    screen = [c for c in ("Failed", "Matched") if c in df.columns and (df[c] != "").any()]
    cols = [*TABLE_COLUMNS, *extra, *screen]
    for c in cols:
        t.add_column(c, justify="left" if c in ("Symbol", "Name", "Sector", "Signal", *screen)
                     else "right", no_wrap=c not in ("Name", *screen),
                     max_width=24 if c == "Name" else 40 if c in screen else None)
    for r in show[cols].itertuples(index=False, name=None):
        t.add_row(*(_fmt(c, v) for c, v in zip(cols, r, strict=True)))
    console = Console(width=200, file=io.StringIO())
    console.print(t)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    if rows and len(df) > rows:
        out += f"... {len(df) - rows} more rows (--rows 0 for all, or --format csv)\n"
    return out


def _fmt(col: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if col in ("Rank", "PositionSize", "RSRating"):
        return f"{int(v):,}"
    if col in ("Return21D",):
        return f"{v:+.1f}%"
    if isinstance(v, float):
        return f"{v:,.2f}"
    return str(v)


@main.group()
def screens() -> None:
    """Saved screens (run after each close) and the preset screens (technic_v4/terms/presets)."""


@screens.command("list")
def screens_list() -> None:
    """The saved screens (name, enabled, last run), then every preset: id, name, description
    and its expression."""
    from technic_v4.daily import service
    from technic_v4.terms.presets import presets

    saved = service.list_screens()
    if saved:
        click.echo("Saved screens:")
        for s in saved:
            last = s["last_run"]
            run = "never run" if last is None else (
                f"last run {last['session']}: {last['rows']} rows, +{last['entered']} "
                f"-{last['left']}, {last['changed']} changed")
            click.echo(f"  {s['name']}  ({'enabled' if s['enabled'] else 'disabled'}; {run}; "
                       f"targets: {', '.join(s['targets']) or 'none'})")
        click.echo("\nPresets:")
    for p in presets().values():
        click.echo(f"{p.id}  ({p.name})\n  {p.description}\n"
                   + "\n".join("    " + line for line in p.expression.splitlines()) + "\n")


@screens.command("show")
@click.argument("name")
def screens_show(name: str) -> None:
    """A saved screen (as JSON: its config, targets, runs and last changes), else a preset:
    its header and expression, and the sessions of history it needs."""
    from technic_v4.daily import service
    from technic_v4.daily.state import check_name
    from technic_v4.errors import ConfigError
    from technic_v4.terms.language import compile
    from technic_v4.terms.presets import preset

    try:
        check_name(name)
        click.echo(json.dumps(service.show_screen(name), indent=2, default=str))
        return
    except ConfigError:
        pass  # not a saved screen: a preset (or the preset's error, naming the closest ids)
    p = preset(name)
    s = compile(p.expression, "preset", "bool")
    click.echo(f"# id: {p.id}\n# name: {p.name}\n# description: {p.description}\n"
               f"# source: {p.source}\n# sessions needed: {s.bars}\n{p.expression}")


@screens.command("add")
@click.argument("name")
@click.option("--where", help="The screen's condition (README \"Screen language\").")
@click.option("--preset", help="A preset id (combined with --where by and).")
@click.option("--column", "columns", multiple=True, metavar="NAME=EXPR",
              help="An extra output column (repeatable).")
@click.option("--sort", "sort_by", help="Sort by this expression or --column name.")
@click.option("--near-miss", "near_miss", type=int, default=None)
@click.option("--max-symbols", "-n", type=int, default=None)
@click.option("--sector", "sectors", multiple=True)
@click.option("--industry", "industries", multiple=True)
@click.option("--type", "types", multiple=True)
@click.option("--symbols", help="Comma-separated tickers.")
@click.option("--top", "top_n", type=int, default=None)
@click.option("--min-rating", "min_tech_rating", type=float, default=None)
@click.option("--only-tradeable", is_flag=True, default=None)
@click.option("--allow-shorts", is_flag=True, default=None)
@click.option("--lookback", "lookback_days", type=int, default=None)
@click.option("--target", "targets", multiple=True, help="An alert target's name (repeatable; "
              "technic alerts add).")
@click.option("--disabled", is_flag=True, help="Save it without running it daily.")
@click.option("--replace", is_flag=True, help="Replace a saved screen of that name.")
def screens_add(name: str, targets: tuple[str, ...], disabled: bool, replace: bool,
                columns: tuple[str, ...], symbols: str | None, **opts: Any) -> None:
    """Save a screen: a --where and/or --preset plus scan options, run after each close."""
    from technic_v4.daily import service

    if not opts.get("where") and not opts.get("preset"):
        raise click.ClickException("give --where EXPR or --preset ID")
    config = {k: v for k, v in opts.items() if v not in (None, (), False)}
    if columns:
        config["columns"] = _columns(columns)
    if symbols:
        config["symbols"] = [s for s in symbols.split(",") if s.strip()]
    out = service.add_screen(name, config, list(targets), enabled=not disabled, replace=replace)
    click.echo(f"saved screen {name} ({'disabled' if disabled else 'enabled'}; targets: "
               f"{', '.join(out['targets']) or 'none'})")


@screens.command("remove")
@click.argument("name")
def screens_remove(name: str) -> None:
    """Delete a saved screen (its past runs stay in the state store)."""
    from technic_v4.daily import service

    service.remove_screen(name)
    click.echo(f"removed screen {name}")


@screens.command("run")
@click.argument("name")
@click.option("--as-of", "as_of", type=click.DateTime(["%Y-%m-%d"]), default=None)
@click.option("--format", "fmt", type=click.Choice(FORMATS[:3]), default="table",
              show_default=True)
@click.option("--rows", type=int, default=30, show_default=True)
def screens_run(name: str, as_of: dt.datetime | None, fmt: str, rows: int) -> None:
    """Scan with a saved screen now (nothing is stored or sent: the daily run does that)."""
    from technic_v4.daily import service

    df, msg = service.run_screen(name, None if as_of is None else as_of.date())
    _write(df, fmt, None, rows)
    click.echo(msg, err=True)


@main.group()
def watchlists() -> None:
    """Watchlists: symbols with your own entry/stop/size; alerts when a stop or target is hit."""


@watchlists.command("add")
@click.argument("name")
@click.argument("items", nargs=-1, required=True, metavar="SYMBOL[:entry[:stop[:size]]]...")
@click.option("--target", "targets", multiple=True, help="An alert target's name (repeatable).")
@click.option("--replace", is_flag=True, help="Replace a watchlist of that name.")
def watchlists_add(name: str, items: tuple[str, ...], targets: tuple[str, ...],
                   replace: bool) -> None:
    """Save a watchlist, e.g. `technic watchlists add core AAPL:180:170:50 MSFT`."""
    from technic_v4.daily import service

    out = service.add_watchlist(name, list(items), list(targets), replace=replace)
    click.echo(f"saved watchlist {name}: {', '.join(i['symbol'] for i in out['items'])}")


@watchlists.command("list")
def watchlists_list() -> None:
    """Every watchlist and its symbols."""
    from technic_v4.daily import service

    for w in service.list_watchlists():
        click.echo(f"{w['name']}: {', '.join(w['symbols'])} (targets: "
                   f"{', '.join(w['targets']) or 'none'})")


@watchlists.command("show")
@click.argument("name")
def watchlists_show(name: str) -> None:
    """A watchlist as JSON: each symbol's last signal, levels and distance to them."""
    from technic_v4.daily import service

    click.echo(json.dumps(service.show_watchlist(name), indent=2, default=str))


@watchlists.command("remove")
@click.argument("name")
def watchlists_remove(name: str) -> None:
    from technic_v4.daily import service

    service.remove_watchlist(name)
    click.echo(f"removed watchlist {name}")


@main.group()
def alerts() -> None:
    """Alert targets (webhook, slack, discord, email, telegram) and failed deliveries."""


@alerts.command("add")
@click.argument("name")
@click.option("--kind", required=True, type=click.Choice(
    ("webhook", "slack", "discord", "email", "telegram")))
@click.option("--url", help="webhook/slack/discord: the URL to post to.")
@click.option("--secret", help="webhook: HMAC-SHA256 signing secret.")
@click.option("--host", help="email: SMTP host.")
@click.option("--port", type=int, help="email: SMTP port.")
@click.option("--security", type=click.Choice(("starttls", "ssl", "none")))
@click.option("--username", help="email: SMTP user.")
@click.option("--password", help="email: SMTP password (stored, never shown).")
@click.option("--sender", help="email: the From address.")
@click.option("--to", "to", multiple=True, help="email: a recipient (repeatable).")
@click.option("--token", help="telegram: the bot token (stored, never shown).")
@click.option("--chat-id", "chat_id", help="telegram: the chat id.")
@click.option("--base-url", "base_url", help="telegram: Bot API base URL.")
@click.option("--replace", is_flag=True, help="Replace a target of that name.")
def alerts_add(name: str, replace: bool, to: tuple[str, ...], **fields: Any) -> None:
    """Save an alert target."""
    from technic_v4.daily import service

    spec = {"name": name, **{k: v for k, v in fields.items() if v is not None}}
    if to:
        spec["to"] = list(to)
    out = service.add_target(spec, replace=replace)
    click.echo(json.dumps(out, default=str))


@alerts.command("list")
def alerts_list() -> None:
    """Every target (secrets shown as "set") and the dead letters: deliveries that failed."""
    from technic_v4.daily import service

    out = service.list_targets()
    for t in out["targets"]:
        click.echo(json.dumps(t, default=str))
    dead = out["dead_letters"]
    click.echo(f"dead letters: {len(dead)}")
    for d in dead:
        click.echo(f"  #{d['id']} {d['target']} {d['screen']} {d['session']}: "
                   f"{d['last_error']} ({d['attempts']} attempts)")


@alerts.command("test")
@click.argument("name")
def alerts_test(name: str) -> None:
    """Send a sample message to a target now."""
    from technic_v4.daily import service

    out = service.test_target(name)
    if not out["ok"]:
        raise click.ClickException(f"{name}: {out['error']}")
    click.echo(f"sent a sample to {name} ({out['attempts']} attempt(s))")


@alerts.command("remove")
@click.argument("name")
def alerts_remove(name: str) -> None:
    from technic_v4.daily import service

    service.remove_target(name)
    click.echo(f"removed alert target {name}")


@main.command()
@click.option("--once", is_flag=True, help="Run what is due (catching up) and exit.")
def watch(once: bool) -> None:
    """The daily run in the foreground: after each NYSE close (+ TECHNIC_SCHEDULE_DELAY_MIN)
    update the store, run the saved screens and watchlists, notify. Ctrl-C exits."""
    import signal

    from technic_v4 import data_engine
    from technic_v4.daily.schedule import Scheduler

    sched = Scheduler(data_engine.market())
    if once:
        reports = sched.tick()
        for r in reports:
            click.echo(json.dumps(r.as_dict()))
        for d in sched.idle:
            click.echo(f"idle: another instance runs {d}")
        return

    def stop(signum: int, frame: Any) -> None:
        if sched.stop.is_set():  # a second Ctrl-C: stop now (stored runs resume on restart)
            raise KeyboardInterrupt
        sched.stop.set()  # wakes the loop's sleep at once; a run under way finishes first
        click.echo("stopping after the current run (Ctrl-C again to stop now)", err=True)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    click.echo("technic watch: the daily run fires after each close; Ctrl-C exits", err=True)
    sched.run_forever()


@main.group()
def data() -> None:
    """The local store: update it, show its status."""


@data.command("update")
def data_update() -> None:
    """Fetch every missing session from the provider into the local store, then the corporate
    actions (splits, dividends) since the last check."""
    from technic_v4 import data_engine

    rep = data_engine.market().ensure_current(progress=True)
    click.echo(json.dumps(rep.as_dict(), indent=2, default=str))


@data.command("status")
def data_status() -> None:
    """Sessions, symbols, last session, corporate actions, delisted listings and size on disk
    of the local store."""
    from technic_v4 import data_engine
    from technic_v4.data.fill import ACTIONS

    store = data_engine.market().store
    out = store.status()
    acts = store.actions()
    out["actions"] = {"splits": int((acts["Type"] == "split").sum()),
                      "dividends": int((acts["Type"] == "dividend").sum()),
                      "checked_through": store.get_meta(ACTIONS)}
    out["delisted_listings"] = int(store.reference()["Delisted"].notna().sum())
    click.echo(json.dumps(out, indent=2, default=str))


@main.group()
def cache() -> None:
    """Cache statistics and clearing."""


@cache.command("stats")
@click.option("--scan/--no-scan", "warm", default=True, show_default=True,
              help="Run a default scan first, so the numbers describe one (a new process has "
              "no cache activity of its own).")
def cache_stats(warm: bool) -> None:
    """Cache layers (memory, Redis, store) and request counters, as JSON."""
    from technic_v4 import data_engine
    from technic_v4.scanner_core import ScanConfig, run_scan

    if warm:
        run_scan(ScanConfig())
    click.echo(json.dumps(data_engine.get_cache_stats(), indent=2, default=str))


@cache.command("clear")
@click.option("--redis", "redis_too", is_flag=True, help="Also delete this dataset's keys in "
              "the shared Redis (every instance loses them).")
@click.option("--store", "store_too", is_flag=True, help="Also delete the local store file "
              "(the next scan refetches everything).")
def cache_clear(redis_too: bool, store_too: bool) -> None:
    """Clear caches: memory and the panel files always; Redis and the local store when
    asked."""
    from technic_v4 import data_engine
    from technic_v4.config.settings import get_settings
    from technic_v4.data.market import delete_store, store_path
    from technic_v4.data.providers.factory import make_provider

    out: dict[str, Any] = {}
    if redis_too:
        md = data_engine.market()
        out["redis_keys_deleted"] = md.l3.clear() if md.l3 is not None else "no Redis configured"
    if store_too:  # without opening it: a damaged store must be deletable too
        current = data_engine.current_market()
        if current is not None:
            path = current.store.path
        else:
            settings = get_settings()
            path = store_path(settings, make_provider(settings))
        data_engine.set_market(None)
        delete_store(path)  # its panel files with it
        out.update(memory="cleared", panel_files="cleared", store_deleted=str(path))
    else:
        md = data_engine.market()
        md.clear_memory()
        md.clear_panel_files()
        out.update(memory="cleared", panel_files="cleared")
    click.echo(json.dumps(out, indent=2))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind (loopback unless told otherwise).")
@click.option("--port", default=8502, show_default=True, type=int)
@click.option("--max-scans", type=click.IntRange(1, 64), default=None,
              help="Scans computed at once (default 2; 8 more may wait, then 429).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="info", show_default=True)
def serve(host: str, port: int, max_scans: int | None, log_level: str) -> None:
    """Run the HTTP API and web page (FastAPI + uvicorn)."""
    try:
        from technic_v4.service.app import run
    except ImportError as e:
        raise click.ClickException(f"the service needs its extra: run pip install -e "
                                   f"'.[service]' in the technic checkout ({e})") from e

    _check_bind(host, port)
    run(host=host, port=port, max_scans=max_scans, log_level=log_level)


def _check_bind(host: str, port: int) -> None:
    """Fail in one line when the address is taken, before the store is opened and warmed
    (uvicorn would log the error among its start-up lines and exit with status 3)."""
    import socket

    try:
        socket.create_server((host, port)).close()
    except OSError as e:
        # socket.create_server appends "(while attempting to bind on address ...)": we say it
        reason = (e.strerror or str(e)).split(" (while attempting")[0]
        raise click.ClickException(f"cannot listen on {host}:{port} ({reason}); choose "
                                   "another --port or --host, or stop the process using it"
                                   ) from e


@main.command()
@click.option("--where", help="The screen: keep rows where this holds (README \"Screen language\").")
@click.option("--preset", help="A preset screen (technic screens list); combined with --where.")
@click.option("--signal", "signals", multiple=True,
              help='Keep rows with this Signal (repeatable), e.g. --signal "Strong Long".')
@click.option("--from", "start", required=True, type=click.DateTime(["%Y-%m-%d"]),
              help="First session replayed (YYYY-MM-DD).")
@click.option("--to", "end", required=True, type=click.DateTime(["%Y-%m-%d"]),
              help="Last session replayed (YYYY-MM-DD).")
@click.option("--every", type=int, default=1, show_default=True,
              help="Replay every N-th session.")
@click.option("--horizons", default="1,5,21,63", show_default=True,
              help="Forward-return horizons in sessions.")
@click.option("--rank-by", help="A numeric column whose IC is measured (e.g. TechRating).")
@click.option("--max-hold", type=int, default=20, show_default=True,
              help="Sessions a trade plan is held at most.")
@click.option("--max-positions", type=int, default=10, show_default=True,
              help="Open positions at most in the equal-risk portfolio.")
@click.option("--top", "top_n", type=int, default=None, help="Keep the N best rows a session.")
@click.option("--min-rating", type=float, default=0.0, show_default=True,
              help="Minimum TechRating.")
@click.option("--max-symbols", "-n", type=int, default=None,
              help="First N listings by market cap at each session (default: all).")
@click.option("--type", "types", multiple=True, help="Listing type (repeatable).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              callback=_output_path,
              help="Write the matched rows here (.csv, .json or .parquet by the suffix).")
@click.option("--report", type=click.Path(path_type=Path), default=None, callback=_report_dir,
              help="Write report.html, summary.md, charts and Parquet frames into this folder "
                   "(created if missing).")
def backtest(where: str | None, preset: str | None, signals: tuple[str, ...],
             start: dt.datetime, end: dt.datetime, every: int, horizons: str,
             rank_by: str | None, max_hold: int, max_positions: int, top_n: int | None,
             min_rating: float,
             max_symbols: int | None, types: tuple[str, ...], output: Path | None,
             report: Path | None) -> None:
    """Replay a screen over every session of a date range: what it matched, and after."""
    from technic_v4.backtest import run
    from technic_v4.backtest.runner import with_signals
    from technic_v4.scanner_core import ScanConfig

    where, shorts = with_signals(where, signals)
    kw: dict[str, Any] = {"where": where, "preset": preset, "top_n": top_n,
                          "min_tech_rating": min_rating, "max_symbols": max_symbols,
                          "allow_shorts": shorts}
    if types:
        kw["types"] = types
    config = ScanConfig(**kw)
    with _Progress() as prog:
        res = run(config, start.date(), end.date(), every=every, horizons=horizons,
                  rank_by=rank_by, max_hold=max_hold, max_positions=max_positions,
                  on_progress=prog.update)
    per_day = res.matches.groupby("AsOf").size() if len(res.matches) else None
    if per_day is not None:
        click.echo(f"{len(per_day):,} of {len(res.replay.sessions):,} sessions matched; rows "
                   f"per matching session: median {per_day.median():g}, max {per_day.max()}")
    ts = res.analyses.get("trade_summary")
    if ts and ts["trades"]:
        pf = res.analyses["portfolio"].stats
        click.echo(f"trade plans: {ts['trades']:,} closed of {ts['signals']:,} signals, win rate "
                   f"{ts['win_rate']:.1%}, expectancy {ts['expectancy_r']:+.2f} R, mean "
                   f"{ts['mean_bars_held']:.1f} sessions held; portfolio (at most "
                   f"{max_positions} open): CAGR {pf['cagr']:+.1%}, max drawdown "
                   f"{pf['max_drawdown']:.1%}, exposure {pf['exposure']:.0%}")
    if output is not None:
        fmt = {".csv": "csv", ".json": "json", ".parquet": "parquet"}.get(output.suffix.lower())
        if fmt is None:
            raise click.BadParameter("the file name ends in .csv, .json or .parquet",
                                     param_hint="--output")
        _write(res.matches, fmt, output, 0)
    if report is not None:
        from technic_v4.backtest.report import write_report

        click.echo(f"wrote {write_report(res, report)}", err=True)
    click.echo(res.message, err=True)




@main.command()
@click.option("--quick", is_flag=True, help="Fewer repeats (a smoke run).")
@click.option("--no-ray", is_flag=True, help="Skip the Ray measurements.")
@click.option("--no-vendor", is_flag=True, help="Skip the loopback-vendor measurements.")
@click.option("--no-daily", is_flag=True, help="Skip the daily run of 50 saved screens.")
@click.option("--big", type=int, default=50_000, show_default=True,
              help="Listings of the large-universe run (0 skips it).")
@click.option("--ray-big", is_flag=True, help="Also replay a 10-clause screen over --big "
              "listings x 20 years on a local multi-node Ray cluster (builds a ~5 GB store).")
@click.option("--ray-big-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where --ray-big builds its market (reused when already there; default: "
              "a temporary directory).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("bench-report.md"), show_default=True, callback=_output_path)
def bench(quick: bool, no_ray: bool, no_vendor: bool, no_daily: bool, big: int,
          ray_big: bool, ray_big_dir: Path | None, output: Path) -> None:
    """Benchmark scans on this machine and write a markdown report."""
    from technic_v4.bench import run_bench
    from technic_v4.config.settings import get_settings

    get_settings()  # a bad TECHNIC_* value fails here in one line, not inside a child process
    report = run_bench(quick=quick, big=big, ray=not no_ray, vendor=not no_vendor,
                       daily=not no_daily, ray_big=ray_big, ray_big_dir=ray_big_dir)
    fsio.write_text(output, report)
    click.echo(report)
    click.echo(f"wrote {output}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
