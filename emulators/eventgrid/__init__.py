"""Event Grid emulator: system topics for Key Vault, event subscriptions to webhooks (with
the validation handshake) and to Azure Functions, push delivery with Event Grid's retry,
delayed-delivery and dead-letter rules, and custom topics that ``EventGridPublisherClient``
publishes to.

Theory of operation
-------------------
Control plane (through ``Arm``, api-version 2025-02-15 shapes): ``systemTopics`` bind a
source resource (a vault's ARM id, topic type ``Microsoft.KeyVault.vaults``; one system
topic per source, as in Azure), may carry a managed ``identity`` and hold
``eventSubscriptions``. A destination is a ``WebHook`` URL or an ``AzureFunction``: a
function's resource id (``.../Microsoft.Web/sites/{app}/functions/{fn}``, as
``infra/events.bicep`` uses), which Event Grid resolves itself to the app's Event Grid
extension endpoint, ``/runtime/webhooks/eventgrid?functionName={fn}&code={system key}``; so
no key is configured anywhere, the app must be known to the platform (the stack registers
its Functions host through the admin API, standing in for the key lookup Azure does through
ARM), there is no handshake and ``getFullUrl`` has nothing to reveal. Creating a webhook
subscription is a long-running operation: while it runs the webhook must pass the validation
handshake, exactly as Azure insists before it sends a single event (Event Grid schema: a
``SubscriptionValidationEvent`` POST answered 200 with ``{"validationResponse": code}``,
or a later GET of the ``validationUrl`` served by the topic listener; CloudEvents: an
``OPTIONS`` abuse-protection request answered 200 with ``WebHook-Allowed-Origin``). A
failed handshake fails the operation and leaves the subscription ``Failed``. GET hides
the endpoint's query string (it carries the Functions key) behind ``endpointBaseUrl``;
``getFullUrl`` reveals it, as in Azure. Dead letters go to a storage container named by
``deadLetterDestination``, or by ``deadLetterWithResourceIdentity``, whose identity
(``SystemAssigned``, or a ``UserAssigned`` id) the system topic must have; the blob is
written with Azurite's account key either way (Azurite has no RBAC, so the identity's role
on the account is not checked).

Data plane: Key Vault calls ``publish_system_event`` synchronously from its handlers. The
event is matched against every ``Succeeded`` subscription of the system topic whose source
is that vault (filters: ``includedEventTypes``, subject prefix/suffix) and queued per
subscription; a flush scheduled with ``call_soon`` batches what arrived in the same turn of
the loop (``maxEventsPerBatch``/``preferredBatchSizeInKilobytes``; one event per request by
default) and starts one asyncio task per batch. A task POSTs the batch (Event Grid schema:
JSON array; CloudEvents: one object, or a batch array) with the ``aeg-*`` headers, counts
200-204 as delivered, and otherwise retries on Event Grid's schedule (10 s, 30 s, 1 min,
5 min, 10 min, 30 min, 1 h, 3 h, 6 h, then every 12 h) raised to the per-status minimum, every
delay multiplied by ``retry_scale`` so tests need not wait hours. 400/401/403/413 are not
retried for webhooks, 400/403/413 for functions (Azure-resource destinations, which also
wait at least 5 minutes after a 401 or 404; current delivery-and-retry doc). Delayed
delivery: after ``PROBATION_AFTER_FAILURES`` failed deliveries in a row to one endpoint (a
webhook URL, or a function), the endpoint is on probation: every later attempt to it,
retries and new events alike, waits until the probation ends (10 s for a timeout or busy
endpoint, 30 s after a connection error, 5 minutes for 401/403/404, 10 minutes for an
``InvalidAzureFunctionDestination`` (a 404 from the host: no Event Grid function of that
name), also scaled by ``retry_scale``) and is logged as ``Delayed``; a delivered batch ends
it. When ``maxDeliveryAttempts`` or ``eventTimeToLiveInMinutes`` runs out (TTL counts
nominal schedule time and the emulated clock, whichever is further) the batch is
dead-lettered, after the scaled 5-minute delay, as a JSON array blob in Azurite with the
doc's dead-letter fields added (``deadLetterReason``, ``deliveryAttempts``,
``lastDeliveryOutcome``, ``publishTime``, ``lastDeliveryAttemptTime``; CloudEvents: the
first four in lower case), or dropped when no dead-letter destination is set. Every attempt,
dead letter and drop is logged for ``GET /eventgrid/deliveries``.

Custom topics (``Microsoft.EventGrid/topics``) exist so the product can publish its own
events: one HTTPS listener serves every topic at ``{topic_base_url}/topics/{name}/api/events``
(the SDK posts to the endpoint verbatim), authenticating ``aeg-sas-key``,
``aeg-sas-token`` or a bearer token for ``https://eventgrid.azure.net``, enforcing the
topic's input schema and the 1 MB limits, and storing what it accepted for
``GET /eventgrid/published``. Custom-topic events are stored, not routed.

Layout: :mod:`~emulators.eventgrid.model` (constants, events, outcomes) and
:mod:`~emulators.eventgrid.config` (a subscription PUT, validated) are plain data;
:mod:`~emulators.eventgrid.state` holds what the parts share; the control plane is
:mod:`~emulators.eventgrid.control` with :mod:`~emulators.eventgrid.handshake`, delivery is
:mod:`~emulators.eventgrid.delivery`, custom-topic publishing is
:mod:`~emulators.eventgrid.publishing`, and :mod:`~emulators.eventgrid.emulator` is the
facade the stack builds.
"""

from emulators.eventgrid.emulator import EventGrid
from emulators.eventgrid.model import (
    AZURE_RESOURCE_MIN_RETRY_S,
    DEAD_LETTER_DELAY_S,
    DEAD_LETTER_GIVE_UP_S,
    DEFAULT_MIN_RETRY_S,
    DELIVERY_TIMEOUT_S,
    MIN_RETRY_S,
    NO_RETRY,
    PROBATION_AFTER_FAILURES,
    RETRY_SCHEDULE_S,
    Outcome,
    probation_seconds,
)

__all__ = [
    "AZURE_RESOURCE_MIN_RETRY_S",
    "DEAD_LETTER_DELAY_S",
    "DEAD_LETTER_GIVE_UP_S",
    "DEFAULT_MIN_RETRY_S",
    "DELIVERY_TIMEOUT_S",
    "MIN_RETRY_S",
    "NO_RETRY",
    "PROBATION_AFTER_FAILURES",
    "RETRY_SCHEDULE_S",
    "EventGrid",
    "Outcome",
    "probation_seconds",
]
