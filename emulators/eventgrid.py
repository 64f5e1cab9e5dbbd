"""Event Grid emulator (placeholder; being written)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from emulators.arm import Arm
from emulators.blobs import Blobs
from emulators.core import Platform


class EventGrid:
    def __init__(self, platform: Platform, arm: Arm, blobs: Blobs, retry_scale: float) -> None:
        self.platform = platform
        self.topic_base_url = ""

    def publish_system_event(
        self, source: str, event_type: str, subject: str, data: dict[str, Any]
    ) -> None:
        pass

    def admin_routes(self) -> list[tuple[str, str, Any]]:
        return []

    def build_topic_app(self) -> web.Application:
        return self.platform.make_app("eventgrid")

    async def close(self) -> None:
        pass
