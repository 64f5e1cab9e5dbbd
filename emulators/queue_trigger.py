"""The Azure Queue storage trigger and queue output binding of the local Functions host.

Theory of operation. Each queue-triggered function gets one :class:`QueueListener` per host
instance, as the Storage Queues extension gives it one ``QueueListener`` (azure-sdk-for-net
``Microsoft.Azure.WebJobs.Extensions.Storage.Queues``; the Functions docs
``functions-bindings-storage-queue-trigger.md`` and ``functions-bindings-storage-queue.md``
"host.json settings"). Several host instances against one storage account share the queue
exactly as scaled-out Functions instances do: nothing coordinates them but the queue's own
visibility, so a message one instance holds is invisible to the others.

The listener's loop, step by step as ``QueueListener.ExecuteAsync`` does it:

1. Until the queue is known to exist, check it (``GetProperties``); a missing queue or any
   storage error backs off (and makes the next round check again).
2. Receive up to ``batchSize`` messages in one request, each made invisible for the
   listener's lease (10 minutes, ``_visibilityTimeout`` in ``QueueListener``).
3. No message: wait the next delay of the randomized exponential backoff
   (``RandomizedExponentialBackoffStrategy``: from 100 ms, ``QueuePollingIntervals.Minimum``,
   growing by about x2 with +-20 % jitter, up to ``maxPollingInterval``); the first empty
   poll after messages were found waits only the minimum. A message this host writes to the
   queue (output binding, poison copy) ends the wait at once (the extension's shared
   "message enqueued" watcher).
4. Messages: process each concurrently, then poll again at once unless more than
   ``newBatchThreshold`` are still running, in which case wait until no more are
   (``WaitForNewBatchThreshold``).

Processing one message (``QueueListener.ProcessMessageAsync``, ``QueueProcessor``):

* ``dequeueCount > maxDequeueCount`` before running (a crash left it over the limit): to the
  poison queue without running. A body that is not valid base64 under the ``base64``
  encoding also goes straight to the poison queue, as the extension's decoding-failure
  handler does.
* While the function runs, the lease is renewed at half its length (``Update Message``
  with the new pop receipt), so a long invocation keeps its message. When the function
  returns, a renewal already sent is let finish (its receipt is the one the delete needs).
* Success: output bindings are written, then the message is deleted.
* Failure: with ``dequeueCount >= maxDequeueCount`` the message text is added to
  ``<queue>-poison`` (created if missing) and deleted, with the extension's warning
  "Message has reached MaxDequeueCount of N. Moving message to queue 'Q-poison'.";
  otherwise it is released with ``visibilityTimeout`` (default 0: visible again at once)
  and redelivered with ``dequeueCount`` one higher. A pop-receipt mismatch or a missing
  message on delete/release means someone else took it over: nothing to do.
* The host killed mid-invocation: nothing is released; the message reappears when the lease
  runs out and is delivered again with a higher ``dequeueCount``.

host.json ``extensions.queues`` settings honoured, with their defaults (the docs' table,
checked against ``QueuesOptions``): ``maxPollingInterval`` 00:01:00 (at least 00:00:00.100),
``visibilityTimeout`` 00:00:00, ``batchSize`` 16 (1-32), ``newBatchThreshold`` batchSize/2
x processor count (``QueuesOptions.NewBatchThreshold``), ``maxDequeueCount`` 5 (above 0),
``messageEncoding`` ``base64`` (or ``none``). Any other key is refused at start-up.

The function sees what the Python worker gives it: ``func.QueueMessage`` built by
azure-functions' own converter from the body and the trigger metadata (``Id``,
``DequeueCount``, ``ExpirationTime``, ``InsertionTime``, ``NextVisibleTime``,
``PopReceipt``). Output bindings (``app.queue_output``) are encoded by azure-functions'
``QueueMessageOutConverter`` and each message (a list gives several) is added under the
same ``messageEncoding``, creating the queue if needed (``AddMessageAndCreateIfNotExists``).

Connections are identity-based only, as the app's infra sets them: ``{connection}__queueServiceUri``
(or its alias ``{connection}__serviceUri``), ``{connection}__credential`` = ``managedidentity``
with ``{connection}__clientId`` (else ``DefaultAzureCredential``). A connection string is
refused (the app's storage allows no shared key).

Known differences: no dynamic concurrency, no scale controller (instances are started by
the stack, not by queue length), lease renewal retries at the normal interval after a
failed renewal (the extension speeds up), and ``LOCAL_QUEUE_MESSAGE_LEASE_SECONDS`` (local
stack only) can shorten the 10-minute lease so tests see renewal and crash recovery in
seconds.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import json
import logging
import os
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.functions import meta
from azure.functions.queue import QueueMessageOutConverter
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.queue import QueueMessage
from azure.storage.queue.aio import QueueClient

log = logging.getLogger("functions_host.queues")

MIN_POLLING_S = 0.1  # QueuePollingIntervals.Minimum
LEASE_S = 600  # QueueListener._visibilityTimeout
LEASE_ENV = "LOCAL_QUEUE_MESSAGE_LEASE_SECONDS"
MAX_BATCH_SIZE = 32  # QueuesOptions.MaxBatchSize
JITTER = 0.2  # RandomizedExponentialBackoffStrategy.RandomizationFactor
POISON_SUFFIX = "-poison"
ENCODINGS = ("base64", "none")
_TIMESPAN = re.compile(r"(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?")


class QueueConfigError(ValueError):
    """host.json or a connection cannot be used the way the real host would use it."""


def parse_timespan(value: object, name: str) -> float:
    """A .NET ``TimeSpan`` string (``[d.]hh:mm:ss[.fffffff]``) in seconds."""
    match = _TIMESPAN.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise QueueConfigError(f"host.json extensions.queues.{name}: {value!r} is not a TimeSpan "
                               "such as '00:00:30'")
    days, hours, minutes, seconds, fraction = match.groups()
    return (int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
            + float(f"0.{fraction or 0}"))


def _integer(settings: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = settings.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise QueueConfigError(
            f"host.json extensions.queues.{name}: {value!r} is not an integer in {low}..{high}"
        )
    return value


@dataclasses.dataclass(frozen=True)
class QueuesOptions:
    """host.json ``extensions.queues``, with the extension's defaults."""

    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @classmethod
    def from_host_json(cls, host_json: Mapping[str, Any]) -> QueuesOptions:
        settings = host_json.get("extensions", {}).get("queues", {})
        if not isinstance(settings, dict):
            raise QueueConfigError("host.json extensions.queues must be an object")
        known = {"maxPollingInterval", "visibilityTimeout", "batchSize", "newBatchThreshold",
                 "maxDequeueCount", "messageEncoding"}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise QueueConfigError(f"host.json extensions.queues: this host does not honour "
                                   f"{unknown} (it honours {sorted(known)})")
        polling = parse_timespan(settings.get("maxPollingInterval", "00:01:00"),
                                 "maxPollingInterval")
        if polling < MIN_POLLING_S:
            raise QueueConfigError("host.json extensions.queues.maxPollingInterval must be at "
                                   "least 00:00:00.100")
        batch = _integer(settings, "batchSize", 16, 1, MAX_BATCH_SIZE)
        # QueuesOptions.NewBatchThreshold: unset means batchSize/2 per processor.
        threshold = _integer(settings, "newBatchThreshold", (batch // 2) * (os.cpu_count() or 1),
                             0, 2**31 - 1)
        encoding = str(settings.get("messageEncoding", "base64")).lower()
        if encoding not in ENCODINGS:
            raise QueueConfigError(f"host.json extensions.queues.messageEncoding must be one of "
                                   f"{ENCODINGS}, not {settings.get('messageEncoding')!r}")
        return cls(
            max_polling_interval=polling,
            visibility_timeout=parse_timespan(settings.get("visibilityTimeout", "00:00:00"),
                                              "visibilityTimeout"),
            batch_size=batch,
            new_batch_threshold=threshold,
            max_dequeue_count=_integer(settings, "maxDequeueCount", 5, 1, 2**31 - 1),
            message_encoding=encoding,
        )

    def encode(self, data: bytes) -> str:
        return base64.b64encode(data).decode() if self.message_encoding == "base64" \
            else data.decode()

    def decode(self, content: str) -> bytes:
        """The message's bytes; ValueError when a base64 body is not base64."""
        if self.message_encoding == "none":
            return content.encode()
        try:
            return base64.b64decode(content, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"not base64: {exc}") from None


class Backoff:
    """``RandomizedExponentialBackoffStrategy`` (minimum = delta = 100 ms)."""

    def __init__(self, maximum: float) -> None:
        self.minimum, self.maximum = min(MIN_POLLING_S, maximum), maximum
        self.current, self.exponent = 0.0, 0

    def next(self, found_message: bool) -> float:
        if found_message:
            self.current, self.exponent = self.minimum, 1
        elif self.current != self.maximum:
            interval = self.minimum
            if self.exponent > 0:
                factor = random.uniform(1 - JITTER, 1 + JITTER)
                interval += factor * 2 ** (self.exponent - 1) * self.minimum
            if interval < self.maximum:
                self.current, self.exponent = interval, self.exponent + 1
            else:
                self.current = self.maximum
        return self.current


# --- Connections ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Connection:
    """An identity-based storage connection, as the host reads it from app settings."""

    name: str
    queue_service_uri: str
    managed_identity: bool
    client_id: str | None

    @classmethod
    def from_settings(cls, name: str, env: Mapping[str, str]) -> Connection:
        uri = env.get(f"{name}__queueServiceUri") or env.get(f"{name}__serviceUri")
        if not uri:
            hint = (" (a connection string is not supported: the app's storage allows no "
                    "shared key)" if env.get(name) else "")
            raise QueueConfigError(f"connection '{name}': app setting {name}__queueServiceUri "
                                   f"is not set{hint}")
        credential = env.get(f"{name}__credential", "")
        if credential and credential.lower() != "managedidentity":
            raise QueueConfigError(f"connection '{name}': {name}__credential must be "
                                   f"'managedidentity', not {credential!r}")
        return cls(name, uri.rstrip("/"), bool(credential), env.get(f"{name}__clientId"))

    def credential(self) -> AsyncTokenCredential:
        if self.managed_identity:
            return ManagedIdentityCredential(client_id=self.client_id)
        return DefaultAzureCredential()


class QueueClients:
    """One client per (connection, queue), sharing a credential per connection. Messages
    are sent and read as raw text: this module applies ``messageEncoding`` itself, so a body
    that does not decode can be moved to the poison queue as it is."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        # The stack's private CA (local only; in Azure the system trust store serves).
        self.verify: str | bool = env.get("STACK_CA_BUNDLE") or True
        self.credentials: dict[str, AsyncTokenCredential] = {}
        self.connections: dict[str, Connection] = {}
        self.clients: dict[tuple[str, str], QueueClient] = {}

    def connection(self, name: str) -> Connection:
        if name not in self.connections:
            self.connections[name] = Connection.from_settings(name, self.env)
        return self.connections[name]

    def get(self, connection: str, queue: str) -> QueueClient:
        key = (connection, queue)
        if key not in self.clients:
            conn = self.connection(connection)
            if connection not in self.credentials:
                self.credentials[connection] = conn.credential()
            self.clients[key] = QueueClient(
                conn.queue_service_uri, queue, credential=self.credentials[connection],
                connection_verify=self.verify,
                # Retries close to the extension's .NET storage clients (Azure.Core
                # RetryOptions default: 3 retries, exponential from 0.8 s), so a storage
                # outage fails an output binding after seconds: here 1 s, 3 s, 5 s (the
                # client's exponential policy takes whole seconds). Its default (15 s,
                # 18 s, 24 s) would hold an Event Grid delivery past the 30 s it waits.
                initial_backoff=1, increment_base=2, retry_total=3, random_jitter_range=0,
            )
        return self.clients[key]

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()
        for credential in self.credentials.values():
            await credential.close()


async def add_message(client: QueueClient, content: str) -> None:
    """``AddMessageAndCreateIfNotExistsAsync``: create the queue on its first message."""
    try:
        await client.send_message(content)
    except ResourceNotFoundError:
        with contextlib.suppress(HttpResponseError):  # created meanwhile by someone else
            await client.create_queue()
        await client.send_message(content)


def output_messages(value: Any, encoding: QueuesOptions) -> list[str]:
    """What a queue output binding's value adds: one message, or one per list item."""
    datum = QueueMessageOutConverter.encode(value, expected_type=None)
    if datum.type == "string":
        return [encoding.encode(str(datum.value).encode())]
    if datum.type == "bytes":
        return [encoding.encode(bytes(datum.value))]
    decoded = json.loads(datum.value)
    items = decoded if isinstance(decoded, list) else [decoded]
    return [encoding.encode((item["body"] if isinstance(item, dict) else str(item)).encode())
            for item in items]


def trigger_metadata(message: QueueMessage) -> dict[str, meta.Datum]:
    """The binding data the host sends the worker with a queue message."""
    def time(value: Any) -> meta.Datum:
        return meta.Datum(value.isoformat() if value is not None else None, "string")

    return {
        "Id": meta.Datum(message.id, "string"),
        "DequeueCount": meta.Datum(int(message.dequeue_count or 0), "int"),
        "ExpirationTime": time(message.expires_on),
        "InsertionTime": time(message.inserted_on),
        "NextVisibleTime": time(message.next_visible_on),
        "PopReceipt": meta.Datum(message.pop_receipt, "string"),
    }


def _taken_over(exc: HttpResponseError) -> bool:
    """Pop receipt mismatch (someone else holds it) or message/queue gone."""
    # error_code: set on storage errors by azure-storage's error processing (not typed on
    # azure-core's HttpResponseError).
    code = getattr(exc, "error_code", None)
    return isinstance(exc, ResourceNotFoundError) or code == "PopReceiptMismatch"


# --- The listener ---------------------------------------------------------------------

# Runs one invocation for a message and its decoded body; True when it succeeded (its
# output bindings written).
Invoke = Callable[[QueueMessage, bytes], Awaitable[bool]]


class QueueListener:
    def __init__(
        self,
        function: str,
        queue: QueueClient,
        poison: QueueClient,
        options: QueuesOptions,
        invoke: Invoke,
        notify_poison: Callable[[], None],
        lease_s: int = LEASE_S,
    ) -> None:
        self.function, self.queue, self.poison = function, queue, poison
        self.options, self.invoke, self.notify_poison = options, invoke, notify_poison
        self.lease_s = lease_s
        self.backoff = Backoff(options.max_polling_interval)
        self.processing: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    @property
    def name(self) -> str:
        return str(self.queue.queue_name)

    def notify(self) -> None:
        """A message was just added to this queue: end the current backoff wait."""
        self._wake.set()

    async def run(self) -> None:
        found_since_last_delay = False
        exists = False
        while True:
            self._wake.clear()
            batch: list[QueueMessage] = []
            try:
                if not exists:
                    exists = await self._exists()
                if exists:
                    batch = await self._receive()
            except AzureError as exc:
                exists = False  # any error: check the queue again next time
                log.warning("Queue '%s' poll failed for '%s': %s", self.name, self.function,
                            type(exc).__name__)
            if not batch:
                delay = self.backoff.next(found_since_last_delay)
                found_since_last_delay = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                continue
            for message in batch:
                task = asyncio.create_task(self._process(message))
                self.processing.add(task)
                task.add_done_callback(self.processing.discard)
            found_since_last_delay = True
            while len(self.processing) > self.options.new_batch_threshold:
                await asyncio.wait(set(self.processing), return_when=asyncio.FIRST_COMPLETED)

    async def _exists(self) -> bool:
        try:
            await self.queue.get_queue_properties()
        except ResourceNotFoundError:
            return False
        return True

    async def _receive(self) -> list[QueueMessage]:
        """One ``Get Messages`` request for up to ``batchSize`` messages."""
        pages = self.queue.receive_messages(
            messages_per_page=self.options.batch_size, visibility_timeout=self.lease_s
        ).by_page()
        try:
            page = await pages.__anext__()
        except StopAsyncIteration:
            return []
        return [message async for message in page]

    async def _process(self, message: QueueMessage) -> None:
        try:
            await self._process_message(message)
        except Exception:  # the extension reports it and carries on with other messages
            log.exception("Processing message %s from queue '%s' failed", message.id, self.name)

    async def _process_message(self, message: QueueMessage) -> None:
        if (message.dequeue_count or 0) > self.options.max_dequeue_count:
            await self._to_poison(message)
            return
        try:
            body = self.options.decode(str(message.content or ""))
        except ValueError as exc:
            log.warning("Message %s in queue '%s' cannot be decoded (%s): moving it to the "
                        "poison queue", message.id, self.name, exc)
            await self._to_poison(message)
            return
        finished = asyncio.Event()
        renewal = asyncio.create_task(self._renew(message, finished))
        try:
            succeeded = await self.invoke(message, body)
        finally:
            # Stopped, not cancelled: a renewal already sent must land and its new pop
            # receipt be kept, or the delete below would use a stale one, fail as "taken
            # over", and the finished message would come back when the renewal runs out.
            finished.set()
            await renewal
        if succeeded:
            await self._delete(message)
        elif (message.dequeue_count or 0) >= self.options.max_dequeue_count:
            await self._to_poison(message)
        else:
            await self._release(message)

    async def _renew(self, message: QueueMessage, finished: asyncio.Event) -> None:
        """Keep the message invisible while the function runs (renew at half the lease),
        until ``finished``."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), self.lease_s / 2)
            if finished.is_set():
                return
            try:
                receipt = await self.queue.update_message(
                    message.id, pop_receipt=message.pop_receipt, visibility_timeout=self.lease_s
                )
            except HttpResponseError as exc:
                if _taken_over(exc):
                    return
                log.warning("Renewing message %s in '%s' failed: %s", message.id, self.name,
                            getattr(exc, "error_code", exc.status_code))
                continue
            except AzureError as exc:
                log.warning("Renewing message %s in '%s' failed: %s", message.id, self.name,
                            type(exc).__name__)
                continue
            message.pop_receipt = receipt.pop_receipt
            message.next_visible_on = receipt.next_visible_on

    async def _delete(self, message: QueueMessage) -> None:
        try:
            await self.queue.delete_message(message.id, message.pop_receipt)
        except HttpResponseError as exc:
            if not _taken_over(exc):
                raise

    async def _release(self, message: QueueMessage) -> None:
        try:
            await self.queue.update_message(
                message.id, pop_receipt=message.pop_receipt,
                visibility_timeout=int(self.options.visibility_timeout),
            )
        except HttpResponseError as exc:
            if not _taken_over(exc):
                raise

    async def _to_poison(self, message: QueueMessage) -> None:
        log.warning("Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
                    self.options.max_dequeue_count, self.poison.queue_name)
        await add_message(self.poison, str(message.content or ""))
        self.notify_poison()
        await self._delete(message)


def lease_seconds(env: Mapping[str, str]) -> int:
    raw = env.get(LEASE_ENV, "")
    if not raw:
        return LEASE_S
    if not raw.isdigit() or int(raw) < 2:
        raise QueueConfigError(f"{LEASE_ENV} must be a whole number of seconds >= 2, not {raw!r}")
    return int(raw)
