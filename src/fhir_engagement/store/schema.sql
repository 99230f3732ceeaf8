-- fhir-engagement durable state (SQLite). Times are ISO 8601 UTC text, so they sort as text.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  started TEXT NOT NULL,
  description TEXT NOT NULL,
  bundle TEXT  -- replay Bundles: NULL none asked, '' owed to the next one, else the Bundle's id
);

-- Every name a patient is known by (Patient/x, urn:uuid:..., nhs:NNN, id:system|value) -> the child.
CREATE TABLE IF NOT EXISTS aliases (
  alias TEXT PRIMARY KEY,
  child TEXT NOT NULL
);
-- Looked up by child too (aliases_of): the store keeps no index of its own in memory.
CREATE INDEX IF NOT EXISTS aliases_child ON aliases (child);
CREATE TABLE IF NOT EXISTS children (
  child TEXT PRIMARY KEY,
  birth_date TEXT
);

CREATE TABLE IF NOT EXISTS status (
  key TEXT PRIMARY KEY,
  patient TEXT NOT NULL,
  codes TEXT NOT NULL,
  start TEXT,
  "end" TEXT,
  active INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS status_patient ON status (patient);

-- One row per (event, signal): the child's engagement history and the chronology.
CREATE TABLE IF NOT EXISTS signals (
  event_key TEXT NOT NULL,
  signal TEXT NOT NULL,
  child TEXT NOT NULL,
  occurred TEXT NOT NULL,
  service TEXT,
  provider TEXT,
  band TEXT NOT NULL,
  situation TEXT NOT NULL DEFAULT '',
  asked TEXT NOT NULL DEFAULT '',
  retracted INTEGER NOT NULL DEFAULT 0,
  version TEXT NOT NULL DEFAULT '',
  origin TEXT NOT NULL,
  PRIMARY KEY (event_key, signal)
);
-- A child's history (the columns the store's history read asks for, in its order): read from the
-- index alone, its rows side by side, not one table page per row (signals_child, its first two
-- columns, was that: a region's year read ~10 scattered pages per history).
DROP INDEX IF EXISTS signals_child;
CREATE INDEX IF NOT EXISTS signals_history ON signals
  (child, occurred, event_key, retracted, band, signal, service, provider, situation, asked);

-- Business identifiers of events (per child), so a v2 message and its FHIR twin are one event.
CREATE TABLE IF NOT EXISTS event_aliases (
  alias TEXT PRIMARY KEY,
  event_key TEXT NOT NULL
);

-- The outbox: every Flag, Task and Provenance decided, by deterministic id.
CREATE TABLE IF NOT EXISTS outputs (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  child TEXT NOT NULL,
  resource BLOB NOT NULL,
  run INTEGER NOT NULL,
  seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outputs_run ON outputs (run, seq);

-- Deliveries: one batch per decision (its Flag, Tasks and Provenance), written to the FHIR
-- server as one transaction. Items name outputs; the Flag's current state is sent.
CREATE TABLE IF NOT EXISTS deliveries (
  batch TEXT PRIMARY KEY,
  child TEXT NOT NULL,
  seq INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt TEXT NOT NULL DEFAULT '',
  last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt, seq);
CREATE TABLE IF NOT EXISTS delivery_items (
  batch TEXT NOT NULL,
  output_id TEXT NOT NULL,
  PRIMARY KEY (batch, output_id)
);

-- Topic-based subscriptions as the listener has seen them: the last event number (for gaps) and
-- the last handshake/heartbeat (for the watchdog).
CREATE TABLE IF NOT EXISTS subscriptions (
  subscription TEXT PRIMARY KEY,
  last_event INTEGER NOT NULL DEFAULT 0,
  last_seen TEXT NOT NULL,
  last_type TEXT NOT NULL
);

-- The durable inbox: a message is here (committed) before it is acknowledged. A sender's
-- re-sent message (same MSH-3/MSH-4 and MSH-10) is acknowledged again and not processed twice.
CREATE TABLE IF NOT EXISTS inbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  received TEXT NOT NULL,
  channel TEXT NOT NULL,
  sender TEXT NOT NULL,
  control_id TEXT NOT NULL,
  origin TEXT NOT NULL,
  raw BLOB NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending',
  UNIQUE (channel, sender, control_id)
);
CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (state, id);

CREATE TABLE IF NOT EXISTS dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  received TEXT NOT NULL,
  origin TEXT NOT NULL,
  reason TEXT NOT NULL,
  raw BLOB NOT NULL
);

-- Reports: every read of one child's chronology (identifiable data), for the data protection
-- officer. `subject` is a keyed hash of the child (HMAC with the audit key, kept outside the store:
-- store/auditkey.py), never the NHS number.
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at TEXT NOT NULL,
  who TEXT NOT NULL,
  action TEXT NOT NULL,
  subject TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT ''
);

-- replay Bundles (replay.py): each --out Bundle claimed for runs' outputs; written = 1 once the
-- file is in place. A claim never confirmed is settled by the next replay: confirmed if the file
-- holds this id, else released (its runs owed again). Older stores get runs.bundle by migration.
CREATE TABLE IF NOT EXISTS bundles (
  id TEXT PRIMARY KEY,
  path TEXT NOT NULL,
  written INTEGER NOT NULL DEFAULT 0
);

-- Write-back: which Patient a target FHIR server holds for a child's identifier (live/patients.py),
-- so a batch names the child by a literal Patient/{id} with one search per child per server.
-- patient_id NULL: the server held none, or several (asked again sooner). `checked` is when the
-- server was asked (the time to live runs from it). New in this version; CREATE IF NOT EXISTS is
-- its migration: an older store gets the empty table on open, and every child is searched once.
CREATE TABLE IF NOT EXISTS server_patients (
  server TEXT NOT NULL,
  system TEXT NOT NULL,
  value TEXT NOT NULL,
  patient_id TEXT,
  checked TEXT NOT NULL,
  PRIMARY KEY (server, system, value)
);
