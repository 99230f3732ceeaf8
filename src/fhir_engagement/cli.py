"""The command line: ``fhir-engagement replay|check|serve|report``. Turns errors into messages and exit codes.

No logic lives here. Exit status: 0 every record read, 1 some record rejected (each one reported
with file, position and reason), 2 usage or configuration error, 3 (replay --fhir-base) decisions
still waiting for the FHIR server, kept in the store, 4 the store failed (disk full, say) or an
internal error: one line on stderr, the traceback in a log file (mode 0600) beside the store.
Never a traceback on the screen.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from zoneinfo import ZoneInfo

import orjson

from fhir_engagement import __version__
from fhir_engagement.config import Settings
from fhir_engagement.decisions.wording import CARES
from fhir_engagement.errors import (
    ConfigError,
    DeliveryError,
    ReportError,
    StoreError,
    StoreLockedError,
)
from fhir_engagement.pipeline import Engine, Pipeline, load_engine
from fhir_engagement.replay import ReplayResult, default_workers, replay, write_bundle
from fhir_engagement.store import Store, is_postgres, open_store, shown

if TYPE_CHECKING:
    from fhir_engagement.live.outbox import DeliveryReport
    from fhir_engagement.reports.audit import Auditor

# Each command imports what only it needs when it runs (live mode's aiohttp and JWT, the
# reports' PDF and charts): importing all of them took 0.7 s of CPU (2.0-2.1 s wall on a busy
# 2-core machine) before any command started, against 0.3 s for what a replay needs: a tenth
# of a 20,000-event replay from the command line. Measured 2026-12-04 with `python -c "import
# fhir_engagement.cli"`; bench/replay_phases.py shows start-up in a replay's phases.

__all__ = ["main", "run"]

_LEASE_WAIT = 10.0  # seconds: longer than a replica takes to fail over (docs/replicas.md)

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_UNDELIVERED, EXIT_INTERNAL = 0, 1, 2, 3, 4
_MAX_REJECTED_SHOWN = 50


def run() -> int:
    """The installed command: ``main``, then the process ends without a last look at its heap.

    At exit CPython collects cyclic garbage over every object still alive (the engine's
    models, the store's caches): 0.21 s of a 20,000-event replay's 4 s, for memory the process
    is about to give back anyway. Frozen objects are not scanned; files and the store are
    closed by ``main`` before this (atexit handlers such as logging's still run). Not in
    ``main`` itself, which tests call many times in one process."""
    code = main()
    gc.freeze()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the process exit status. The one place errors become exit codes."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _command(args)
    except ConfigError as exc:
        print(f"fhir-engagement: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreLockedError as exc:  # another process writes it: run again later, as asked
        print(f"fhir-engagement: store error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:  # the store failed under us (disk full): not the input's fault
        print(f"fhir-engagement: store error: {exc}{_AFTER_STORE_ERROR.get(args.command, '')}",
              file=sys.stderr)
        return EXIT_INTERNAL
    except ReportError as exc:
        print(f"fhir-engagement: report error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug: one line on screen, the traceback in a private log file
        print(f"fhir-engagement: internal error: {type(exc).__name__}; "
              f"{_log_internal_error(exc, args)}", file=sys.stderr)
        return EXIT_INTERNAL


_AFTER_STORE_ERROR = {
    "replay": " (nothing was acknowledged: the inputs are still on disk; replay them again once "
              "the store can be written)",
}


def _command(args: argparse.Namespace) -> int:
    """The command asked for, with settings and mappings loaded first (errors go up)."""
    settings = _settings(args)
    if args.command == "store":  # the store itself: no mappings needed to migrate or inspect it
        return _store(args, settings, sys.stdout)
    engine = load_engine(settings)
    if args.command == "check":
        return _check(engine, settings, sys.stdout)
    if args.command == "serve":
        return _serve(engine, settings, args.insecure)
    if args.command == "deadletter":
        return _deadletter(args, engine, settings, sys.stdout)
    if args.command == "inbox":
        return _inbox(args, settings, sys.stdout)
    if args.command == "subscribe":
        return _subscribe(args, settings, sys.stderr)
    if args.command == "report":
        return _report(args, engine, settings, sys.stdout)
    if args.command == "letter":
        return _letter(args, engine, settings, sys.stdout)
    return _replay(args, engine, settings, sys.stderr)


def _log_internal_error(exc: Exception, args: argparse.Namespace) -> str:
    """Write the traceback to a new 0600 file beside the store; say where (or why not).

    Beside the store because a traceback may quote input (a child's details): it belongs where
    that data already lives, under the same protection, never on a shared screen or in /tmp.
    """
    name = f"fhir-engagement-error-{datetime.now(UTC):%Y%m%dT%H%M%S}-{os.getpid()}.log"
    path = _log_folder(args) / name
    text = "".join(traceback.format_exception(exc))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as log:
            log.write(text)
    except OSError as write_error:
        return f"no log written ({path}: {write_error.strerror})"
    return f"details in {path}"


def _log_folder(args: argparse.Namespace) -> Path:
    """The store's folder (--store, else the settings file's); the current one for :memory:."""
    store = getattr(args, "store", None)
    if not store:
        try:
            store = Settings.load(args.config).store
        except Exception:  # the settings may be what failed: then the current folder
            store = None
    if not store or store == ":memory:" or is_postgres(store):  # a database: no folder of its own
        return Path.cwd()
    return Path(store).resolve().parent


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fhir-engagement",
        description="Apply the HSCP Child and Family Engagement Guidance to FHIR events.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", type=Path, help="settings TOML file")
    parser.add_argument("--mappings", type=Path, help="mappings folder (default: the shipped one)")
    sub = parser.add_subparsers(dest="command", required=True)
    rp = sub.add_parser("replay", help="dry run: replay files/folders, write one transaction Bundle")
    rp.add_argument("paths", nargs="+", type=Path, help=".json, .ndjson, .jsonl, .hl7, .txt (or "
                    ".gz) files and folders")
    rp.add_argument("--out", type=Path, help="where to write the Bundle (the dry run)")
    rp.add_argument("--fhir-base", help="also write each decision to this FHIR server, through "
                    "the store's outbox (token from FHIR_ENGAGEMENT_FHIR_TOKEN)")
    rp.add_argument("--store", help="SQLite file that keeps state across runs, :memory:, or a "
                    "postgresql:// DSN")
    rp.add_argument("--source", help="source system name, for local codes (mappings/local/)")
    rp.add_argument("--quiet", action="store_true", help="no progress lines")
    rp.add_argument("--workers", type=_workers, help="processes that read the input (default: "
                    "replay_workers, else 2 on a machine of 2 or more cores; 1 reads in this one)")
    sub.add_parser("check", help="load and check mappings and rules, then print what was loaded")
    dl = sub.add_parser("deadletter", help="what the adapter could not use: list, show, retry")
    dl.add_argument("action", choices=("list", "show", "retry"))
    dl.add_argument("id", nargs="?", type=int, help="the dead letter's id (show, retry)")
    dl.add_argument("--reveal", action="store_true", help=_REVEAL_HELP)
    dl.add_argument("--store", help="SQLite file or postgresql:// DSN that keeps state")
    ib = sub.add_parser("inbox", help="live input waiting or quarantined: list, show, retry, drop")
    ib.add_argument("action", choices=("list", "show", "retry", "drop"))
    ib.add_argument("id", nargs="?", type=int, help="the inbox item's id (show, retry, drop)")
    ib.add_argument("--all", action="store_true", help="list: done items too")
    ib.add_argument("--reveal", action="store_true", help=_REVEAL_HELP)
    ib.add_argument("--store", help="SQLite file or postgresql:// DSN that keeps state")
    sb = sub.add_parser("subscribe", help="create or repair the Subscriptions on the FHIR server")
    sb.add_argument("--fhir-base", required=True, help="the FHIR server's base URL")
    sb.add_argument("--endpoint", required=True, help="where the server should send: "
                    "http://adapter:8080/notify")
    sb.add_argument("--rotate", action="store_true", help="give every Subscription a new secret "
                    "(the old one is accepted for subscription_secret_grace seconds)")
    sb.add_argument("--store", help="SQLite file or postgresql:// DSN that keeps state (the "
                    "secrets' generations)")
    sv = sub.add_parser("serve", help="run the listener(s): HTTP (health, dashboard) and MLLP")
    sv.add_argument("--host", help="HTTP address (default 127.0.0.1)")
    sv.add_argument("--port", type=int, help="HTTP port (default 8080)")
    sv.add_argument("--mllp-port", type=int, help="MLLP port for HL7 v2 feeds (off by default)")
    sv.add_argument("--store", help="SQLite file or postgresql:// DSN that keeps state")
    sv.add_argument("--fhir-base", help="the FHIR server to read context from and write back to")
    sv.add_argument("--insecure", action="store_true", help="listen beyond this machine without "
                    "credentials (warned at every start; for a network you trust completely)")
    _report_parser(sub)
    _store_parser(sub)
    lt = sub.add_parser("letter", help="a send-wnb-letter Task's letter draft: text, HTML or PDF "
                        "(audited: it names a child)")
    lt.add_argument("task_id", metavar="TASK_ID", help="the send-wnb-letter Task's id (fe-task-...)")
    lt.add_argument("--copy", choices=("parent", "gp"), default="parent",
                    help="the parent's letter (default) or the GP's copy")
    lt.add_argument("--format", choices=("text", "html", "pdf"), default="text")
    lt.add_argument("--out", type=Path, help="write to this file (0600) instead of printing; "
                    "needed for pdf")
    lt.add_argument("--store", help="the store to read (SQLite file or postgresql:// DSN)")
    return parser


def _workers(text: str) -> int:
    """--workers: a whole number of processes, 1 or more."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"give a whole number of processes, 1 or more: {text!r}")
    return number


def _settings(args: argparse.Namespace) -> Settings:
    base = Settings.load(args.config)
    changes: dict[str, object] = {}
    if args.mappings:
        changes["mappings_dir"] = args.mappings
    if getattr(args, "store", None):
        changes["store"] = args.store
    if getattr(args, "source", None):
        changes["source"] = args.source
    for name in ("host", "port", "mllp_port", "fhir_base"):
        if getattr(args, name, None) is not None:
            changes[name] = getattr(args, name)
    return base.model_copy(update=changes)


def _replay(args: argparse.Namespace, engine: Engine, settings: Settings, err: TextIO) -> int:
    if args.out is None and not settings.fhir_base:
        print("fhir-engagement replay: give --out FILE (dry run), --fhir-base URL, or both",
              file=err)
        return EXIT_USAGE
    store = open_store(settings.store)
    try:
        _take_lease(store, settings.store)
        progress = None if args.quiet else (lambda line: print(line, file=err, flush=True))
        workers = args.workers or settings.replay_workers or default_workers()
        result = replay(args.paths, engine, store, progress, args.out, keep_bundle=False,
                        workers=workers)
        if args.out is not None and not _write_bundle(result, args.out, store, err):
            return EXIT_USAGE
        report = _deliver(store, settings) if settings.fhir_base else None
    finally:
        store.close()
    _summary(result, args.out, shown(settings.store), err)
    if report is not None:
        print(f"FHIR server {settings.fhir_base}: {report.delivered:,} decisions written, "
              f"{report.dead:,} refused (dead-letter store), {report.pending:,} still waiting "
              "for the server (kept; the next replay or serve sends them)", file=err)
        if report.pending:
            return EXIT_UNDELIVERED
    return EXIT_REJECTED if result.rejected else EXIT_OK


def _take_lease(store: Store, location: str, wait: float = _LEASE_WAIT) -> None:
    """Decide only as the one process that decides on this store (docs/replicas.md).

    On SQLite the file's lock already made this process the one; on PostgreSQL a running serve
    replica holds the lease while it runs: a replay beside it would count a child's events out of
    order, so it waits a little (a replica failing over) and then refuses, as SQLite does.
    """
    deadline = time.monotonic() + wait
    while not store.hold_lease():
        if time.monotonic() >= deadline:
            raise StoreLockedError(
                f"another process (a serve replica or a replay) is deciding on {shown(location)}: "
                "one decides at a time; stop it first, or send the files to the running serve")
        time.sleep(0.5)


def _deliver(store: Store, settings: Settings) -> DeliveryReport:
    import asyncio
    
    from fhir_engagement.live.outbox import deliver_pending
    
    report = asyncio.run(deliver_pending(store, settings))
    report.pending = store.delivery_counts().get("pending", 0)
    return report


def _write_bundle(result: ReplayResult, out: Path, store: Store, err: TextIO) -> bool:
    try:
        write_bundle(result, out, store)
    except OSError as exc:
        print(f"fhir-engagement: cannot write {out}: {exc.strerror} (the decisions are kept: "
              "the next replay with --out writes them)", file=err)
        return False
    return True


def _subscribe(args: argparse.Namespace, settings: Settings, err: TextIO) -> int:
    import asyncio
    
    from fhir_engagement.fhirserver.subscribe import subscribe
    
    # The secrets' generations are never cached: this may run beside a running serve.
    store = open_store(settings.store, exclusive=False)
    try:
        report = asyncio.run(subscribe(settings, args.endpoint, store, args.rotate))
    except DeliveryError as exc:
        print(f"fhir-engagement subscribe: the FHIR server refused: {exc}", file=err)
        return EXIT_USAGE
    finally:
        store.close()
    print(f"Subscriptions for {args.endpoint}: {report.created} created, {report.repaired} "
          f"repaired, {report.rotated} given a new secret, {report.unchanged} already active",
          file=err)
    for topic in report.topics_not_offered:
        print(f"  topic not offered by the server, not subscribed: {topic}", file=err)
    return EXIT_OK


_REVEAL_HELP = ("show: print the raw content (children's data), recorded in the audit table "
                "and, with a FHIR server, as an AuditEvent")
_REVEAL_HINT = "(content withheld: --reveal prints it, and the read is audited)"


def _deadletter(args: argparse.Namespace, engine: Engine, settings: Settings, out: TextIO) -> int:
    import asyncio
    
    from fhir_engagement.live.deadletters import mask, preview, retry_dead_letter
    
    if args.action != "list" and args.id is None:
        print(f"fhir-engagement deadletter {args.action}: give the dead letter's id", file=sys.stderr)
        return EXIT_USAGE
    store = open_store(settings.store)
    try:
        if args.action == "list":
            for letter, received, origin, reason in store.dead_letter_rows():
                raw = (store.dead_letter_raw(letter) or ("", b""))[1]
                print(f"{letter}\t{received}\t{mask(origin)}\t{mask(reason)}\t{preview(raw)}",
                      file=out)
            return EXIT_OK
        if args.action == "show":
            found = store.dead_letter_raw(args.id)
            if found is None:
                print(f"fhir-engagement deadletter: no dead letter {args.id}", file=sys.stderr)
                return EXIT_USAGE
            _show(args, settings, store, "deadletter", found, out)
            return EXIT_OK
        pipeline = Pipeline(engine, store, store.start_run(f"deadletter retry {args.id}"))
        result = asyncio.run(retry_dead_letter(pipeline, args.id))
        print(f"dead letter {args.id}: {'taken' if result.taken else 'not taken'} "
              f"({mask(result.detail)})", file=out)
        return EXIT_OK if result.taken else EXIT_REJECTED
    finally:
        store.close()


def _show(args: argparse.Namespace, settings: Settings, store: Store, kind: str,
          found: tuple[str, bytes], out: TextIO) -> None:
    """A kept item: its masked summary, or (``--reveal``) its raw content, audited first."""
    from fhir_engagement.live.deadletters import mask, preview
    
    origin, raw = found
    if not args.reveal:
        print(f"{kind} {args.id}\t{mask(origin)}\t{preview(raw)}\n{_REVEAL_HINT}", file=out)
        return
    read = _auditor(settings, store).reveal(store, kind, args.id)
    _send_audit_event(settings, read.event)
    out.write(raw.decode("utf-8", "replace"))


def _auditor(settings: Settings, store: Store) -> Auditor:
    """The configured (or OS) person, with the audit key from outside the store."""
    from fhir_engagement.reports.audit import Auditor, requester
    from fhir_engagement.store.auditkey import audit_key
    
    return Auditor(audit_key(settings, store), requester(settings.operator))


def _send_audit_event(settings: Settings, event: dict[str, object]) -> None:
    """POST the read's AuditEvent to the FHIR server, if one is set; say so if it fails.

    The local audit row is already committed: a server that does not answer does not stop the
    read, but the operator is told that the server's audit trail misses it."""
    import asyncio
    
    if not settings.fhir_base:
        return
    try:
        asyncio.run(_post_audit_event(settings, event))
    except DeliveryError as exc:
        print(f"fhir-engagement: the AuditEvent of this read was not written to the FHIR server "
              f"({exc}); it is recorded in the local audit table only", file=sys.stderr)


async def _post_audit_event(settings: Settings, event: dict[str, object]) -> None:
    import aiohttp
    
    from fhir_engagement.fhirserver.auth import token_source
    from fhir_engagement.fhirserver.client import FhirClient
    
    async with aiohttp.ClientSession() as session:
        client = FhirClient(settings.fhir_base or "", session, token_source(settings, session))
        await client.create({k: v for k, v in event.items() if k != "id"})


_INBOX_STATES = ("pending", "quarantined", "dropped")


def _inbox(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from fhir_engagement.live.deadletters import (
        drop_inbox_item,
        mask,
        preview,
        retry_inbox_item,
    )
    
    if args.action != "list" and args.id is None:
        print(f"fhir-engagement inbox {args.action}: give the item's id", file=sys.stderr)
        return EXIT_USAGE
    # The inbox is never cached in memory, so these commands may run beside a running serve.
    store = open_store(settings.store, exclusive=False)
    try:
        if args.action == "list":
            states = (*_INBOX_STATES, "done") if args.all else _INBOX_STATES
            for row in store.inbox_rows(states):
                raw = (store.inbox_raw(row.id) or ("", b""))[1]
                print(f"{row.id}\t{row.received}\t{row.channel}\t{row.state}\t"
                      f"{row.attempts}\t{mask(row.origin)}\t{mask(row.last_error)}\t"
                      f"{preview(raw)}", file=out)
            return EXIT_OK
        if args.action == "show":
            found = store.inbox_raw(args.id)
            if found is not None:
                _show(args, settings, store, "inbox", found, out)
            return _found(found is not None, args.id)
        act, done = ((retry_inbox_item, "back to pending") if args.action == "retry" else
                     (drop_inbox_item, "dropped, kept as a dead letter"))
        if not act(store, args.id):
            return _found(False, args.id)
        print(f"inbox item {args.id}: {done}", file=out)
        return EXIT_OK
    finally:
        store.close()


def _found(found: bool, item: int) -> int:
    if not found:
        print(f"fhir-engagement inbox: no item {item}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _serve(engine: Engine, settings: Settings, insecure: bool) -> int:
    import asyncio
    
    from fhir_engagement.live.app import build_app, open_exposure
    from fhir_engagement.live.http import serve
    from fhir_engagement.observability import setup_logging
    from fhir_engagement.store.auditkey import audit_key
    
    refusal = open_exposure(settings)
    if refusal and not insecure:
        print(f"fhir-engagement serve: {refusal}; set the credentials (FHIR_ENGAGEMENT_NOTIFY_TOKEN, "
              "FHIR_ENGAGEMENT_READ_TOKEN) or, knowingly, --insecure", file=sys.stderr)
        return EXIT_USAGE
    store = open_store(settings.store)
    setup_logging(key=audit_key(settings, store))  # log hashes name a child as the audit does
    if refusal:
        logging.getLogger("fhir_engagement.serve").warning(
            "--insecure: %s; anyone who can reach it can raise Flags and Tasks on any child",
            refusal)
    try:
        asyncio.run(serve(build_app(settings, engine, store), settings))
    except OSError as exc:  # a port in use, an address not on this machine
        print(f"fhir-engagement serve: cannot listen (HTTP {settings.host}:{settings.port}, "
              f"MLLP {settings.mllp_host}:{settings.mllp_port}): {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_USAGE
    finally:
        store.close()
    return EXIT_OK


def _summary(result: ReplayResult, out: Path | None, store: str, err: TextIO) -> None:
    stats = result.stats
    lines = [
        f"read {stats.get('documents', 0):,} FHIR documents, {stats.get('v2 messages', 0):,} HL7 v2 "
        f"messages ({stats.get('v2 messages ignored', 0):,} of types not mapped), "
        f"{stats.get('events', 0):,} events "
        f"({stats.get('files skipped', 0):,} files of other kinds skipped)",
        f"duplicates ignored: {stats.get('duplicates', 0):,}; adults excluded: "
        f"{stats.get('adults excluded', 0):,}; stale versions: {stats.get('stale versions', 0):,}",
        _group(stats, "signal ", "signals"),
        _group(stats, "retracted ", "retracted"),
        _group(stats, "flag ", "Flags written"),
        _group(stats, "task ", "Tasks written"),
        _group(stats, "letter ", "letter drafts written (CommunicationRequest)"),
        f"rejected records: {len(result.rejected):,} (kept in the dead-letter store {store})",
    ]
    lines += [f"  {e.where}: {e.reason}" for e in result.rejected[:_MAX_REJECTED_SHOWN]]
    if len(result.rejected) > _MAX_REJECTED_SHOWN:
        lines.append(f"  ... and {len(result.rejected) - _MAX_REJECTED_SHOWN:,} more")
    if out is not None:
        earlier = (f", {result.earlier:,} of them decided by an earlier run that wrote no Bundle"
                   if result.earlier else "")
        lines.append(f"wrote {result.entries:,} entries to {out}{earlier}")
    print("\n".join(lines), file=err)


def _group(stats: dict[str, int], prefix: str, title: str) -> str:
    items = sorted((k[len(prefix):], v) for k, v in stats.items() if k.startswith(prefix))
    body = ", ".join(f"{k} {v:,}" for k, v in items) or "none"
    return f"{title}: {body}"


def _check(engine: Engine, settings: Settings, out: TextIO) -> int:
    mappings, rules = engine.mappings, engine.rules
    print(f"mappings: {settings.mappings_dir} (digest {mappings.digest})", file=out)
    for name in mappings.files:
        print(f"  {name}", file=out)
    print(f"code sets: {len(mappings.codesets)}; extensions: "
          f"{sum(len(v) for v in mappings.extensions.values())}", file=out)
    print(f"rules: version {rules.version}, {len(rules.cells)} cells, "
          f"{len(rules.holidays)} holidays, {len(rules.owners)} owner roles", file=out)
    if engine.letters is not None:
        print(f"WNB letters: {', '.join(sorted(engine.letters.languages))} (and page.html)",
              file=out)
    words = engine.wording  # rules.md s.8: the words each care setting gives its Tasks
    print("Task wording: " + "; ".join(
        f"{care} {len(words.descriptions.get(care, {}))} descriptions, "
        f"{len(words.questions.get(care, {}))} questions" for care in CARES), file=out)
    return EXIT_OK


# -- report: aggregate figures by default; a chronology only for a named, audited request -------
def _report_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rp = sub.add_parser("report", help="the not-brought rate, the pattern mix, a child's chronology")
    kinds = rp.add_subparsers(dest="report", required=True)
    for name, text in (("rate", "not-brought rate per provider per quarter"),
                       ("mix", "children by pattern, Flags and Tasks by code, per quarter")):
        kp = kinds.add_parser(name, help=text)
        kp.add_argument("--from", dest="first", type=_day, help="first day (YYYY-MM-DD, local)")
        kp.add_argument("--to", dest="last", type=_day, help="last day, included")
        if name == "rate":
            kp.add_argument("--provider", help="one provider, as the report names it "
                            "(e.g. Organization/RJ1)")
        kp.add_argument("--csv", type=Path, help="also write the figures as CSV")
        kp.add_argument("--svg", type=Path, help="also write the chart as SVG")
        kp.add_argument("--store", help="the store to read (SQLite file or postgresql:// DSN)")
    cp = kinds.add_parser("chronology", help="one child's events and actions, in order (audited)")
    cp.add_argument("--patient", required=True, metavar="NHS_NUMBER",
                    help="the child's NHS number (required: chronologies are never aggregate)")
    cp.add_argument("--bundle", type=Path, help="also write a FHIR Bundle (collection)")
    cp.add_argument("--household", action="store_true",
                    help="also each brother or sister (sharing a parent or carer), each read audited")
    cp.add_argument("--store", help="the store to read (SQLite file or postgresql:// DSN)")


def _store_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``store ACTION``: one subparser per action, each with its own --store (add more here)."""
    sp = sub.add_parser("store", help="the store itself: apply migrations, show its state")
    actions = sp.add_subparsers(dest="store_action", required=True)
    for name, text in (("migrate", "apply pending schema migrations (PostgreSQL), print them"),
                       ("status", "backend, schema version, pending migrations, queue counts")):
        ap = actions.add_parser(name, help=text)
        ap.add_argument("--store", help="SQLite file or postgresql:// DSN")
    cp = actions.add_parser("copy", help="move a SQLite store into an empty PostgreSQL store: "
                            "history, outbox, inbox, dead letters and audit, ids kept")
    cp.add_argument("--from", dest="source", required=True, metavar="SQLITE",
                    help="the SQLite store file (no process may be writing it)")
    cp.add_argument("--to", dest="target", required=True, metavar="DSN",
                    help="postgresql://... (migrated first; must hold no rows)")


def _store(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    """``store migrate|status``; an unreachable or absent store is a usage error (exit 2)."""
    location = settings.store
    try:
        if args.store_action == "copy":
            return _store_copy(args.source, args.target, out)
        if is_postgres(location):
            return _postgres_store(args.store_action, location, out)
        return _sqlite_store(args.store_action, location, out)
    except StoreError as exc:
        print(f"fhir-engagement store {args.store_action}: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _store_copy(source: str, target: str, out: TextIO) -> int:
    from fhir_engagement.store.copy import copy_store  # loads the PostgreSQL driver

    if not Path(source).is_file():
        print(f"fhir-engagement store copy: no SQLite store at {source}", file=sys.stderr)
        return EXIT_USAGE
    report = copy_store(source, target,
                        lambda table, rows: print(f"  {table}: {rows:,} rows", file=out))
    print(f"copied {report.total:,} rows from {source} to {shown(target)}; point the settings' "
          "store at it, and keep the SQLite file until the adapter has run on PostgreSQL",
          file=out)
    return EXIT_OK


def _postgres_store(action: str, location: str, out: TextIO) -> int:
    # Imported here, as open_store does: a SQLite-only command never loads the driver.
    from fhir_engagement.store.postgres import apply_migrations, display_name, migration_status

    if action == "migrate":
        applied = apply_migrations(location)
        print(f"store: {display_name(location)} (postgresql)", file=out)
        print(f"applied: {', '.join(applied)}" if applied else "applied: none (up to date)",
              file=out)
        return EXIT_OK
    version, pending, counts = migration_status(location)
    print(f"store: {display_name(location)} (postgresql)", file=out)
    print(f"schema version: {version or 'none (store migrate, or any command, applies them)'}",
          file=out)
    print(f"pending migrations: {', '.join(pending) or 'none'}", file=out)
    for name, count in (counts or {}).items():
        print(f"{name}: {count:,}", file=out)
    return EXIT_OK


def _sqlite_store(action: str, location: str, out: TextIO) -> int:
    if location != ":memory:" and not Path(location).is_file() and action == "status":
        print(f"fhir-engagement store status: no store at {location}", file=sys.stderr)
        return EXIT_USAGE
    store = open_store(location, exclusive=False)  # opening applies schema.sql: the migration
    try:
        store.commit()
        print(f"store: {location} (sqlite)", file=out)
        if action == "migrate":
            print("applied: schema.sql at open (SQLite keeps no versioned migrations)", file=out)
            return EXIT_OK
        print("schema version: schema.sql (applied at every open)\npending migrations: none",
              file=out)
        print(f"inbox pending: {store.inbox_depth()[0]:,}", file=out)
        print(f"deliveries pending: {store.delivery_counts().get('pending', 0):,}", file=out)
        print(f"dead letters: {len(store.dead_letter_rows()):,}", file=out)
    finally:
        store.close()
    return EXIT_OK


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _report(args: argparse.Namespace, engine: Engine, settings: Settings, out: TextIO) -> int:
    from fhir_engagement.reports import open_report_store
    from fhir_engagement.reports.charts import mix_chart, rate_chart
    from fhir_engagement.reports.mix import mix_csv, mix_report, mix_text
    from fhir_engagement.reports.period import Period
    from fhir_engagement.reports.rates import rate_csv, rate_report, rate_text
    
    store = open_report_store(settings.store)
    try:
        tz = ZoneInfo(engine.rules.timezone)
        if args.report == "rate":
            rates = rate_report(store, tz, Period(args.first, args.last), args.provider)
            _files(args, rate_csv(rates), rate_chart(rates))
            print(rate_text(rates), end="", file=out)
        elif args.report == "mix":
            mix = mix_report(store, tz, Period(args.first, args.last))
            _files(args, mix_csv(mix), mix_chart(mix))
            print(mix_text(mix, engine.systems), end="", file=out)
        else:
            _chronology(args, engine, settings, store, tz, out)
    finally:
        store.close()
    return EXIT_OK


def _chronology(args: argparse.Namespace, engine: Engine, settings: Settings, store: Store,
                tz: ZoneInfo, out: TextIO) -> None:
    from fhir_engagement.reports.chronology import (
        chronology_bundle,
        chronology_text,
        open_chronology,
        open_household,
    )
    
    detail = "text and bundle" if args.bundle else "text"
    auditor = _auditor(settings, store)
    chrons = (open_household(store, args.patient, engine.systems, auditor, detail)
              if args.household else
              [open_chronology(store, args.patient, engine.systems, auditor, detail)])
    for chron in chrons:
        _send_audit_event(settings, chron.audit_event)
    if args.bundle:  # the named child's; a household's others are shown, not exported
        bundle = chronology_bundle(chrons[0], engine.systems)
        _write(args.bundle, orjson.dumps(bundle, option=orjson.OPT_INDENT_2).decode())
    print(chronology_text(chrons[0], engine.systems, tz), end="", file=out)
    for chron in chrons[1:]:
        print(f"\n--- A brother or sister (shares a parent or carer; rules.md s.8) ---\n"
              f"{chronology_text(chron, engine.systems, tz)}", end="", file=out)
    if args.household and len(chrons) == 1:
        print("\nNo brother or sister is known to share a parent or carer.", file=out)


def _letter(args: argparse.Namespace, engine: Engine, settings: Settings, out: TextIO) -> int:
    """A letter draft, read (and audited) like a chronology: one named child, never aggregate."""
    from fhir_engagement.reports import open_report_store
    from fhir_engagement.reports.letters import letter_html, letter_pdf, open_letter
    
    if args.format == "pdf" and args.out is None:
        print("fhir-engagement letter: --format pdf needs --out FILE (a PDF is not for a "
              "terminal)", file=sys.stderr)
        return EXIT_USAGE
    if engine.letters is None:
        raise ReportError("no letter templates are loaded (mappings/letters/)")
    store = open_report_store(settings.store)
    try:
        letter = open_letter(store, args.task_id, _auditor(settings, store), args.copy,
                             args.format)
    finally:
        store.close()
    _send_audit_event(settings, letter.read.event)
    if args.format == "pdf":
        content: bytes = letter_pdf(letter)
    else:
        text = letter_html(letter, engine.letters) if args.format == "html" else letter.text
        if args.out is None:
            print(text, end="" if text.endswith("\n") else "\n", file=out)
            return EXIT_OK
        content = text.encode("utf-8")
    _write_private(args.out, content)
    return EXIT_OK


def _write_private(path: Path, content: bytes) -> None:
    """A file only its owner can read (0600): a letter names a child and their family."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(content)
        os.chmod(path, 0o600)  # an existing file keeps its old mode through O_CREAT
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror}") from exc
    print(f"wrote {path}", file=sys.stderr)


def _files(args: argparse.Namespace, csv_text: str, svg_text: str) -> None:
    if args.csv:
        _write(args.csv, csv_text)
    if args.svg:
        _write(args.svg, svg_text)


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror}") from exc
    print(f"wrote {path}", file=sys.stderr)
