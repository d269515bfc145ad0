"""A job's webhook: where its events go, and which events (stored on the job row)."""

from __future__ import annotations

import dataclasses

from common.webhooks.models import DEFAULT_EVENTS, WebhookEvent


@dataclasses.dataclass(frozen=True)
class WebhookTarget:
    url: str
    events: tuple[WebhookEvent, ...] = DEFAULT_EVENTS

    @classmethod
    def of(cls, url: str | None, events: str | None) -> WebhookTarget | None:
        """From the job row's columns (None for a job without a webhook)."""
        if not url:
            return None
        return cls(url, tuple(WebhookEvent(e) for e in (events or "completed").split(",")))

    @classmethod
    def requested(cls, url: str | None, events: list[str] | None) -> WebhookTarget | None:
        if not url:
            return None
        chosen = set(events or DEFAULT_EVENTS)
        return cls(url, tuple(e for e in WebhookEvent if e in chosen))

    @property
    def column(self) -> str:
        return ",".join(e.value for e in self.events)

    def wants(self, event: WebhookEvent) -> bool:
        return event in self.events
