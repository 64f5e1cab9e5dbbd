"""The pipeline's queues: created in the app's account with their poison companions, reached
through the host's identity-based connection, and processed under host.json settings the
local host accepts (the same parser refuses what it cannot honour)."""

from __future__ import annotations

import json

from emulators.queue_trigger import POISON_SUFFIX, QueuesOptions
from tests.infra.bicep import ROOT, render, resource, variable

WORK_QUEUES = ["cert-rotation-hints", "cert-rotation-services", "cert-rotation-follow"]


def test_every_work_queue_and_its_poison_queue_is_created_in_the_app_account() -> None:
    assert variable("app/app.bicep", "workQueueNames") == WORK_QUEUES
    queues = resource("app/app.bicep", "queues")
    assert queues.type == "Microsoft.Storage/storageAccounts/queueServices/queues"
    assert render(queues.body["parent"]) == "queueService"
    assert render(resource("app/app.bicep", "queueService").body["parent"]) == "storage"
    assert POISON_SUFFIX == "-poison"
    assert "'${name}-poison'" in (ROOT / "infra" / "app" / "app.bicep").read_text()


def test_the_host_reaches_the_queues_with_its_identity() -> None:
    settings = variable("app/app.bicep", "appSettings")["function"]["parameters"]
    fixed = next(v for v in settings.values() if isinstance(v, dict))
    assert render(fixed["AzureWebJobsStorage__queueServiceUri"]) == (
        "storage.properties.primaryEndpoints.queue"
    )
    assert fixed["AzureWebJobsStorage__credential"] == "managedidentity"


def test_host_json_queue_settings() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    options = QueuesOptions.from_host_json(host)
    assert options == QueuesOptions(
        max_polling_interval=5.0, visibility_timeout=30.0, batch_size=4,
        new_batch_threshold=2, max_dequeue_count=5, message_encoding="base64",
    )
