"""A wasi:http handler written in Python and built with componentize-py.

Acts on the last path segment, like the Rust `http-hello` guest: `set?secret=X` keeps X in
a module global (the canary an isolation test looks for in the next request), `get` says
what the global holds, `grow?mb=N` keeps N MiB alive (for memory limits), `trap` raises,
and anything else says hello with how many requests this instance has served.
"""

from urllib.parse import parse_qs

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

# Module state lives in the interpreter heap, which componentize-py pre-initialises into the
# component's memory image: a fresh instance must start with these values again.
SERVED = 0
SECRET = None
HELD = []


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        global SERVED, SECRET
        SERVED += 1
        target = request.path_with_query() or "/"
        path, _, query = target.partition("?")
        params = {k: v[0] for k, v in parse_qs(query).items()}
        action = path.rsplit("/", 1)[-1]
        status = 200
        if action == "set":
            SECRET = params.get("secret", "")
            body = f"stored {SECRET}"
        elif action == "get":
            body = f"secret: {SECRET if SECRET is not None else 'none'}"
        elif action == "grow":
            mb = int(params.get("mb", "1"))
            for _ in range(mb):
                HELD.append(bytearray(1 << 20))
            body = f"holding {len(HELD)} MiB"
        elif action == "trap":
            raise RuntimeError("the handler was asked to trap")
        else:
            body = f"hello from {path} (python); request #{SERVED} of this instance"
        respond(response_out, status, body)


def respond(response_out: ResponseOutparam, status: int, text: str) -> None:
    response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    data = (text + "\n").encode()
    with body.write() as stream:
        # blocking-write-and-flush takes at most 4096 bytes at a time.
        for start in range(0, len(data), 4096):
            stream.blocking_write_and_flush(data[start : start + 4096])
    OutgoingBody.finish(body, None)
