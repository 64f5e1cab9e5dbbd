"""The app's own sends to its work queues.

Most messages go out through the Functions queue output binding; this adapter is for the
one thing a binding cannot do: send a message that becomes visible only after a delay
(``visibility_timeout`` on Put Message), so a batch waiting for something in progress
comes back later without spending one of its attempts. It uses the host's own queue
endpoint (``AzureWebJobsStorage__queueServiceUri``) with the app's identity (Storage Queue
Data Message Sender, granted by infra), the shared client options (retries, the
destination check) and base64 text, the host.json ``messageEncoding`` the trigger reads.
"""

from __future__ import annotations

from azure.core.exceptions import AzureError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from shared.adapters.arm_errors import translate
from shared.adapters.clients import Clients
from shared.domain.errors import ConfigError


class Queues:
    def __init__(self, clients: Clients) -> None:
        self._clients = clients
        self._queues: dict[str, QueueClient] = {}

    def _queue(self, name: str) -> QueueClient:
        url = self._clients.settings.queue_url
        if url is None:
            raise ConfigError(
                "AzureWebJobsStorage__queueServiceUri is not set: the app cannot send its "
                "own queue messages"
            )
        if name not in self._queues:
            self._queues[name] = QueueClient(
                url, name, credential=self._clients.credential,
                message_encode_policy=TextBase64EncodePolicy(), **self._clients.options(),
            )
        return self._queues[name]

    def send_later(self, queue: str, text: str, delay_seconds: int) -> None:
        """Add ``text`` to ``queue``, invisible for ``delay_seconds``. Raises
        TransientError when storage cannot take it now, ConfigError without an endpoint."""
        try:
            self._queue(queue).send_message(text, visibility_timeout=delay_seconds)
        except AzureError as exc:
            raise translate(exc, f"queueing a message on {queue}") from exc
