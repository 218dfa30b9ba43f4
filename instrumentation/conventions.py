"""Every name of the telemetry contract: spans, metrics, attributes, attribute values, log fields.

The instrumentation emits these names and the dashboard reads them, so both import them from
here and a rename is one edit. They follow the OpenTelemetry semantic conventions where one
exists (HTTP server, database client spans and metrics: ``http.*``, ``db.*``, ``server.*``,
``error.type``); the project's own names start with ``vrp.``. ``docs/telemetry.md`` is the
reference for users; ``tests/instrumentation/test_conventions.py`` keeps it in step with this
module. This module imports nothing, so any process may read it for free.
"""

from __future__ import annotations

from typing import Final

# -- Resource -----------------------------------------------------------------------------------

SERVICE_NAME: Final = "service.name"
SERVICE_VERSION: Final = "service.version"
SERVICE_INSTANCE_ID: Final = "service.instance.id"
PROCESS_PID: Final = "process.pid"
DEPLOYMENT_ENVIRONMENT_NAME: Final = "deployment.environment.name"

# -- Span names ---------------------------------------------------------------------------------
# SERVER spans are named "{http.request.method} {http.route}" (the method alone, or "HTTP" for
# an unknown method, when no route matched); CLIENT statement spans are named by the statement's
# db.query.summary, "{db.operation.name} {db.collection.name}" (the database system when the
# statement cannot be parsed).

DB_SESSION_SPAN: Final = "db.session"
DB_TRANSACTION_SPAN: Final = "db.transaction"
# Around Database.ping (a readiness probe's check): a pooled connection and SELECT 1.
DB_PING_SPAN: Final = "db.ping"
# Around the schema check at start-up and migrations (recorder.schema_version).
DB_MIGRATE_SPAN: Final = "db.migrate"
BACKUP_RUN_SPAN: Final = "backup.run"
BACKUP_RESTORE_SPAN: Final = "backup.restore"
# Each phase of a run is a child span "backup.<phase>" carrying VRP_BACKUP_PHASE.
BACKUP_PHASE_SPAN_PREFIX: Final = "backup."
BACKUP_PHASES: Final = ("snapshot", "blobs", "manifest", "verify", "prune")
# One copy of the local backups to the offsite remote (backup.remote), with its retention.
BACKUP_COPY_SPAN: Final = "backup.copy"

# The steps of a request outside the database, INTERNAL children of its SERVER span, so that
# the request's time is explained. Every Flask request (instrumentation.flask): Flask's work
# before the view (request context, URL routing, before_request hooks) and after it
# (make_response, after_request hooks, error handlers, teardown). The app's own steps
# (instrumentation.spans): its arguments read and validated (the body parsed, a multipart
# upload included), its result serialised into the response body, an upload's audio probed, a
# blob written (hashed, written, fsynced, renamed), a blob's lock waited for, a blob deleted, a
# blob opened for a download, the storage checked by a readiness probe.
HTTP_REQUEST_ROUTE_SPAN: Final = "http.request.route"
HTTP_RESPONSE_FINALIZE_SPAN: Final = "http.response.finalize"
HTTP_REQUEST_PARSE_SPAN: Final = "http.request.parse"
HTTP_RESPONSE_SERIALIZE_SPAN: Final = "http.response.serialize"
AUDIO_PROBE_SPAN: Final = "audio.probe"
STORAGE_WRITE_SPAN: Final = "storage.write"
STORAGE_LOCK_SPAN: Final = "storage.lock"
STORAGE_DELETE_SPAN: Final = "storage.delete"
STORAGE_OPEN_SPAN: Final = "storage.open"
STORAGE_CHECK_SPAN: Final = "storage.check"
# A readiness probe's checks together (its db.ping and storage.check are children).
HEALTH_CHECK_SPAN: Final = "health.check"

# Span events.
RETRY_EVENT: Final = "retry"
LANDED_CHECK_EVENT: Final = "landed_check"

# -- Attributes: HTTP ---------------------------------------------------------------------------

HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_REQUEST_METHOD_ORIGINAL: Final = "http.request.method_original"
HTTP_ROUTE: Final = "http.route"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
URL_PATH: Final = "url.path"
URL_SCHEME: Final = "url.scheme"
CLIENT_ADDRESS: Final = "client.address"
USER_AGENT_ORIGINAL: Final = "user_agent.original"
ERROR_TYPE: Final = "error.type"
VRP_REQUEST_ID: Final = "vrp.request.id"

# -- Attributes: exceptions (span events, log records) and code locations (log records) -------

EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"
CODE_FILE_PATH: Final = "code.file.path"
CODE_FUNCTION_NAME: Final = "code.function.name"
CODE_LINE_NUMBER: Final = "code.line.number"

# -- Attributes: database -----------------------------------------------------------------------

DB_SYSTEM_NAME: Final = "db.system.name"
DB_NAMESPACE: Final = "db.namespace"
DB_OPERATION_NAME: Final = "db.operation.name"
DB_COLLECTION_NAME: Final = "db.collection.name"
DB_QUERY_TEXT: Final = "db.query.text"
DB_QUERY_SUMMARY: Final = "db.query.summary"
DB_RESPONSE_STATUS_CODE: Final = "db.response.status_code"
DB_CLIENT_CONNECTION_POOL_NAME: Final = "db.client.connection.pool.name"
DB_CLIENT_CONNECTION_STATE: Final = "db.client.connection.state"

VRP_DB_SESSION_STATEMENTS: Final = "vrp.db.session.statements"
VRP_DB_SESSION_OUTCOME: Final = "vrp.db.session.outcome"
VRP_DB_TRANSACTION_ATTEMPTS: Final = "vrp.db.transaction.attempts"
VRP_DB_TRANSACTION_OUTCOME: Final = "vrp.db.transaction.outcome"
# On retry events and retry / landed-check log records.
VRP_DB_TRANSACTION_ATTEMPT: Final = "vrp.db.transaction.attempt"
VRP_DB_TRANSACTION_RETRY_DELAY: Final = "vrp.db.transaction.retry_delay_s"
VRP_DB_TRANSACTION_LANDED: Final = "vrp.db.transaction.landed"

# -- Attributes: alerts (the dashboard's log records of alert transitions) ---------------------

VRP_ALERT_RULE: Final = "vrp.alert.rule"
VRP_ALERT_FINGERPRINT: Final = "vrp.alert.fingerprint"
VRP_ALERT_STATE: Final = "vrp.alert.state"

# -- Attributes: backups ------------------------------------------------------------------------

VRP_BACKUP_ID: Final = "vrp.backup.id"
VRP_BACKUP_TRIGGER: Final = "vrp.backup.trigger"
VRP_BACKUP_STATUS: Final = "vrp.backup.status"
VRP_BACKUP_BYTES: Final = "vrp.backup.bytes"
VRP_BACKUP_STORED_BYTES: Final = "vrp.backup.stored_bytes"
VRP_BACKUP_FILES: Final = "vrp.backup.files"
VRP_BACKUP_VERIFIED: Final = "vrp.backup.verified"
VRP_BACKUP_PHASE: Final = "vrp.backup.phase"
# On the backup.blobs phase: audio files copied into the blob archive, and those already there.
VRP_BACKUP_BLOBS_COPIED: Final = "vrp.backup.blobs.copied"
VRP_BACKUP_BLOBS_SKIPPED: Final = "vrp.backup.blobs.skipped"
# On the backup.prune phase: backups and blobs removed, and the bytes that freed.
VRP_BACKUP_PRUNED: Final = "vrp.backup.pruned"
VRP_BACKUP_PRUNED_BLOBS: Final = "vrp.backup.pruned_blobs"
VRP_BACKUP_FREED_BYTES: Final = "vrp.backup.freed_bytes"
# On the warning that a run took over a lock left by a process no longer running.
VRP_BACKUP_LOCK_PREVIOUS_PID: Final = "vrp.backup.lock.previous_pid"
# What a run backed up, on backup.run, backup.restore and the backup metrics: the id of the
# repository (from `vrp backup init`) and the database URL without credentials or query.
VRP_BACKUP_REPOSITORY_ID: Final = "vrp.backup.repository.id"
VRP_BACKUP_DATABASE: Final = "vrp.backup.database"
# The offsite copy, on backup.copy and vrp.backup.remote.last_success: the remote's URL without
# credentials, and what one copy sent or found there.
VRP_BACKUP_REMOTE: Final = "vrp.backup.remote"
VRP_BACKUP_COPY_SNAPSHOTS: Final = "vrp.backup.copy.snapshots"
VRP_BACKUP_COPY_OBJECTS_SENT: Final = "vrp.backup.copy.objects_sent"
VRP_BACKUP_COPY_OBJECTS_SKIPPED: Final = "vrp.backup.copy.objects_skipped"
VRP_BACKUP_COPY_BYTES_SENT: Final = "vrp.backup.copy.bytes_sent"
VRP_BACKUP_COPY_ATTEMPTS: Final = "vrp.backup.copy.attempts"

# -- Attributes: alert notifications (dashboard.notify) -----------------------------------------

# The channel a notification went to: webhook, slack or email.
VRP_ALERT_CHANNEL: Final = "vrp.alert.channel"
# What became of it: delivered, or failed once retries were exhausted (or the error was final).
VRP_ALERT_DELIVERY_OUTCOME: Final = "vrp.alert.delivery.outcome"

# -- Attribute values ---------------------------------------------------------------------------

DB_SYSTEM_SQLITE: Final = "sqlite"
DB_SYSTEM_POSTGRESQL: Final = "postgresql"
DB_SYSTEM_MYSQL: Final = "mysql"
DB_SYSTEM_MARIADB: Final = "mariadb"
DB_SYSTEM_MSSQL: Final = "microsoft.sql_server"
DB_SYSTEM_ORACLE: Final = "oracle.db"
SESSION_OUTCOMES: Final = ("commit", "rollback", "closed", "error")
TRANSACTION_OUTCOMES: Final = ("commit", "rollback", "error")
CONNECTION_STATE_IDLE: Final = "idle"
CONNECTION_STATE_USED: Final = "used"
BACKUP_TRIGGER_SCHEDULE: Final = "schedule"
BACKUP_TRIGGER_MANUAL: Final = "manual"
BACKUP_STATUS_SUCCESS: Final = "success"
BACKUP_STATUS_FAILED: Final = "failed"

# -- Metrics ------------------------------------------------------------------------------------

HTTP_SERVER_REQUEST_DURATION: Final = "http.server.request.duration"
DB_CLIENT_OPERATION_DURATION: Final = "db.client.operation.duration"
DB_CLIENT_CONNECTION_COUNT: Final = "db.client.connection.count"
DB_CLIENT_CONNECTION_MAX: Final = "db.client.connection.max"
DB_CLIENT_CONNECTION_WAIT_TIME: Final = "db.client.connection.wait_time"
DB_CLIENT_CONNECTION_TIMEOUTS: Final = "db.client.connection.timeouts"
VRP_DB_TRANSACTION_RETRIES: Final = "vrp.db.transaction.retries"
VRP_DB_CONNECTION_LEAKS: Final = "vrp.db.connection.leaks"
VRP_BACKUP_LAST_SUCCESS: Final = "vrp.backup.last_success"
VRP_BACKUP_DURATION: Final = "vrp.backup.duration"
VRP_BACKUP_NEXT_RUN: Final = "vrp.backup.next_run"
VRP_ALERT_NOTIFICATIONS: Final = "vrp.alert.notifications"
# Unix time of the last successful copy to each remote (VRP_BACKUP_REMOTE attribute).
VRP_BACKUP_REMOTE_LAST_SUCCESS: Final = "vrp.backup.remote.last_success"
# Families of metrics, by the start of their names: the connection pool's, and the project's own
# database metrics (transactions, leaks).
DB_CLIENT_CONNECTION_NAMESPACE: Final = "db.client.connection"
VRP_DB_NAMESPACE: Final = "vrp.db"

# The histograms of durations, in seconds: exported as base-2 exponential histograms by default
# (see instrumentation.telemetry.duration_histogram_views).
DURATION_HISTOGRAMS: Final = (
    HTTP_SERVER_REQUEST_DURATION,
    DB_CLIENT_OPERATION_DURATION,
    DB_CLIENT_CONNECTION_WAIT_TIME,
    VRP_BACKUP_DURATION,
)

# -- Log records --------------------------------------------------------------------------------
# Every JSON log line carries these fields, plus the record's extra fields named with the
# attribute names above (http.route, db.system.name, error.type, ...).

LOG_TIMESTAMP: Final = "timestamp"
LOG_LEVEL: Final = "level"
LOG_LOGGER: Final = "logger"
LOG_MESSAGE: Final = "message"
LOG_SERVICE: Final = "service"
LOG_TRACE_ID: Final = "trace_id"
LOG_SPAN_ID: Final = "span_id"
LOG_REQUEST_ID: Final = "request_id"
# The OpenTelemetry logs data model's severity texts where they differ from Python's level names:
# the instrumentation sends these, the dashboard shows both spellings under Python's name.
SEVERITY_TEXTS: Final = {"WARNING": "WARN", "CRITICAL": "FATAL"}
LOG_FIELDS: Final = (
    LOG_TIMESTAMP,
    LOG_LEVEL,
    LOG_LOGGER,
    LOG_MESSAGE,
    LOG_SERVICE,
    LOG_TRACE_ID,
    LOG_SPAN_ID,
    LOG_REQUEST_ID,
)

# The access record (one INFO record per HTTP request) adds the request's attributes above, its
# duration, and the summary of the database work the request did (instrumentation.uow).
LOG_DURATION_MS: Final = "duration_ms"
# Where inside the instrumentation a contained failure happened (instrumentation.failures).
TELEMETRY_FAILURE_PLACE: Final = "telemetry.failure.place"
VRP_DB_SESSIONS: Final = "vrp.db.sessions"
VRP_DB_TRANSACTIONS: Final = "vrp.db.transactions"
VRP_DB_TRANSACTIONS_COMMIT: Final = "vrp.db.transactions.commit"
VRP_DB_TRANSACTIONS_ROLLBACK: Final = "vrp.db.transactions.rollback"
VRP_DB_TRANSACTIONS_ERROR: Final = "vrp.db.transactions.error"
VRP_DB_ATTEMPTS: Final = "vrp.db.attempts"
VRP_DB_RETRIES: Final = "vrp.db.retries"
VRP_DB_STATEMENTS: Final = "vrp.db.statements"
VRP_DB_DURATION_MS: Final = "vrp.db.duration_ms"
