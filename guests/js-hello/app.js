// A wasi:http handler written in JavaScript and built with jco (componentize-js).
//
// Acts on the last path segment, like the Rust `http-hello` guest: `set?secret=X` keeps X in
// a module global (the canary an isolation test looks for in the next request), `get` says
// what the global holds, `grow?mb=N` keeps N MiB alive (for memory limits), `trap` throws,
// and anything else says hello with how many requests this instance has served.

import { Fields, OutgoingBody, OutgoingResponse, ResponseOutparam } from "wasi:http/types@0.2.12";

// Module state lives in the engine's heap, which componentize-js pre-initialises into the
// component's memory image: a fresh instance must start with these values again.
let served = 0;
let secret = null;
const held = [];

export const incomingHandler = {
  handle(request, responseOut) {
    served += 1;
    const target = request.pathWithQuery() ?? "/";
    const [path, query = ""] = target.split("?", 2);
    const params = new Map(query.split("&").filter(Boolean).map((kv) => kv.split("=", 2)));
    const action = path.slice(path.lastIndexOf("/") + 1);
    let body;
    if (action === "set") {
      secret = params.get("secret") ?? "";
      body = `stored ${secret}`;
    } else if (action === "get") {
      body = `secret: ${secret ?? "none"}`;
    } else if (action === "grow") {
      const mb = Number(params.get("mb") ?? "1");
      for (let i = 0; i < mb; i++) {
        // Filled, so the pages are really touched rather than left as untouched zeroes.
        held.push(new Uint8Array(1 << 20).fill(1));
      }
      body = `holding ${held.length} MiB`;
    } else if (action === "trap") {
      throw new Error("the handler was asked to trap");
    } else {
      body = `hello from ${path} (javascript); request #${served} of this instance`;
    }
    respond(responseOut, 200, body);
  },
};

function respond(responseOut, status, text) {
  const response = new OutgoingResponse(Fields.fromList([["content-type", new TextEncoder().encode("text/plain")]]));
  response.setStatusCode(status);
  const body = response.body();
  ResponseOutparam.set(responseOut, { tag: "ok", val: response });
  const data = new TextEncoder().encode(text + "\n");
  const stream = body.write();
  // blocking-write-and-flush takes at most 4096 bytes at a time.
  for (let start = 0; start < data.length; start += 4096) {
    stream.blockingWriteAndFlush(data.subarray(start, start + 4096));
  }
  stream[Symbol.dispose]();
  OutgoingBody.finish(body, undefined);
}
