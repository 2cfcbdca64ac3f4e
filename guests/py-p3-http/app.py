"""A WASI 0.3 HTTP handler (wasi:http/handler@0.3.0) in Python, built with componentize-py
against wit/p3 (world membrane:p3-probe/http-guest) by scripts/build-interpreted-guests.sh:
it answers 200 with the path and how many requests this instance has served, the body
written by a task of its own after the response is returned, as WASI 0.3 lets it."""

import wit_world
from wit_world import exports
from wit_world.imports.wasi_http_types import Fields, Request, Response
from componentize_py_types import Ok
from componentize_py_async_support import spawn

served = 0


class Handler(exports.Handler):
    async def handle(self, request: Request) -> Response:
        global served
        served += 1
        path = request.get_path_with_query() or "/"
        body = f"python p3 hello from {path}; request #{served} of this instance\n".encode()

        body_tx, body_rx = wit_world.byte_stream()
        trailers_tx, trailers_rx = (
            wit_world.result_option_wasi_http_types_fields_wasi_http_types_error_code_future(lambda: Ok(None))
        )
        headers = Fields.from_list([("content-type", b"text/plain")])
        response, _sent = Response.new(headers, body_rx, trailers_rx)
        response.set_status_code(200)

        async def write_body() -> None:
            with body_tx:
                await body_tx.write_all(body)
            with trailers_tx:
                await trailers_tx.write(Ok(None))

        spawn(write_body())
        return response
