"""A streaming response that frees an admission slot however the stream ends."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Mapping

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class SlotReleasingStream(StreamingResponse):
    """Frees its admission slot on every way out: the body's end, an error, or the client going away
    before the first chunk (then the body generator never starts, so its ``finally`` never runs and
    only the response's own close is left). ``release`` must be once-only
    (``AdmissionController.releaser``): the body may also call it as soon as it is done."""

    def __init__(
        self,
        content: AsyncIterable[bytes],
        release: Callable[[], None],
        *,
        status_code: int = 200,
        media_type: str = "text/event-stream",
        headers: Mapping[str, str] | None = None,
        aclose: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(content, status_code=status_code, media_type=media_type, headers=headers)
        self._release = release
        self._aclose = aclose
        """Closes what the body would have closed (an upstream response), also when it never ran."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                if self._aclose is not None:
                    await self._aclose()
            finally:
                self._release()
