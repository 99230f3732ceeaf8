"""The serve app's typed state (``web.AppKey``s), shared by the factory, routes and workers."""

from __future__ import annotations

import asyncio

from aiohttp import web

from fhir_engagement.config import Settings
from fhir_engagement.fhirserver.client import FhirClient
from fhir_engagement.ingest.mllp import MllpListener
from fhir_engagement.live.fhir_inbox import FhirInbox
from fhir_engagement.live.lease import Lease
from fhir_engagement.live.status_sources import StatusSources
from fhir_engagement.live.workers import Supervisor
from fhir_engagement.pipeline import Engine, Pipeline
from fhir_engagement.store.base import Store

__all__ = ["CLIENT", "ENGINE", "FHIR_INBOX", "INBOX_WAKES", "LEASE", "MLLP_SERVER", "OUTBOX_WAKE",
           "PIPELINE", "REPLICA", "SETTINGS", "STATUS_SOURCES", "STORE", "SUPERVISOR", "WAKE"]

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", Engine)
STORE = web.AppKey("store", Store)
PIPELINE = web.AppKey("pipeline", Pipeline)
MLLP_SERVER = web.AppKey("mllp_server", MllpListener)
FHIR_INBOX = web.AppKey("fhir_inbox", FhirInbox)
CLIENT = web.AppKey("client", FhirClient)
STATUS_SOURCES = web.AppKey("status_sources", StatusSources)  # set when status_sources are configured
SUPERVISOR = web.AppKey("supervisor", Supervisor)
WAKE = web.AppKey("wake", asyncio.Event)  # set when a push is kept: the FHIR inbox worker runs
OUTBOX_WAKE = web.AppKey("outbox_wake", asyncio.Event)  # set when a decision is committed
LEASE = web.AppKey("lease", Lease)  # whether this replica decides and delivers (live/lease.py)
REPLICA = web.AppKey("replica", str)  # this replica's name in /metrics and /readyz
# each inbox channel's worker wake event, for the NOTIFY listener (live/wakeups.py)
INBOX_WAKES = web.AppKey("inbox_wakes", dict[str, asyncio.Event])
