"""The web process's WebSockets: uvicorn's own protocol (websockets' sans-I/O), which also lets
the app write a live event's message as one frame in one call.

Through ASGI every message a subscriber receives is an awaited `send` through each middleware,
Starlette's socket and uvicorn's protocol, which frames it through websockets' state machine:
at a thousand subscribers of one event, these layers cost more than the writes themselves. A
socket of this protocol puts itself in its ASGI scope (`scope["extensions"][FRAMES]`), so that
the fan-out of live events (schema/core/fanout.py) can write a message it encoded once for many
sockets straight to each transport, in the loop that relays the event, without waking a task
per subscriber. A message that cannot be written so (the socket is closing, its client reads
too slowly, or it compresses its frames) is refused, and goes the usual way through ASGI.

Serve with it: `uvicorn ... --ws infra.live_sockets:LiveSocket` (`invoicing serve` does,
through `uvicorn_options`)."""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Opcode
from websockets.http11 import Request

from infra.settings import Settings

FRAMES = "invoicing.frames"
_TEXT = 0x80 | Opcode.TEXT  # FIN, text: a whole message in one frame


def text_frame_header(length: int) -> bytes:
    """The header of a server's unmasked, unfragmented text frame of `length` bytes (RFC 6455,
    section 5.2). No extension applies: a socket that negotiated one is never written to here."""
    if length < 126:
        return bytes((_TEXT, length))
    if length < 1 << 16:
        return bytes((_TEXT, 126)) + length.to_bytes(2, "big")
    return bytes((_TEXT, 127)) + length.to_bytes(8, "big")


class LiveSocket(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, offering `write_frame` to the app in its scope."""

    # Kept here rather than read through uvicorn's objects: a relay checks them for every
    # subscriber of every event. Whether the transport asked to stop writing (`writable`)...
    paused = False
    # ...and, once the handshake is done, whether no extension was agreed.
    _plain: bool | None = None

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # None: the upgrade was refused
        if scope is not None:
            scope["extensions"][FRAMES] = self

    def pause_writing(self) -> None:
        super().pause_writing()
        self.paused = True

    def resume_writing(self) -> None:
        super().resume_writing()
        self.paused = False

    def write_frame(self, frame: bytes) -> bool:
        """Write `frame`, a whole text frame (`text_frame_header`, then its data), now; False,
        with nothing written, when it must go through ASGI instead: before the handshake or
        once closing starts, with permessage-deflate (each frame then depends on the ones
        before), or while the transport holds more than its high-water mark unsent (a client
        that does not read: ASGI's send waits, and the subscriber's bounded queue ends it).
        The connection leaves the OPEN state only by a close sent (`close_sent`) or received
        (uvicorn then closes the transport), or by its loss (`disconnected`)."""
        if self.close_sent or self.disconnected or self.paused:
            return False
        plain = self._plain
        if plain is None:
            if not self.handshake_complete:
                return False
            plain = self._plain = not self.conn.extensions
        transport = self.transport
        if not plain or transport.is_closing():
            return False
        transport.write(frame)
        return True


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's WebSocket options of every web process (`invoicing serve`, the tests' servers)."""
    return {
        "ws": LiveSocket,
        "ws_max_size": settings.ws_max_message_bytes,
        "ws_per_message_deflate": settings.ws_per_message_deflate,
    }
