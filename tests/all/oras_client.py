"""An independent OCI client for membrane's registry tests: oras-py (PyPI `oras`).

  push FILE HOST:PORT/REPO:TAG   push FILE as a Wasm component artifact (config
                                 application/vnd.wasm.config.v0+json, one application/wasm layer)
  pull HOST:PORT/REPO:TAG OUTDIR pull the artifact's layer files into OUTDIR
"""

import json
import os
import sys
import tempfile

import oras.client

WASM_CONFIG = "application/vnd.wasm.config.v0+json"
WASM_LAYER = "application/wasm"


def main():
    command, args = sys.argv[1], sys.argv[2:]
    client = oras.client.OrasClient(insecure=True)
    if command == "push":
        path, target = args
        with tempfile.TemporaryDirectory() as tmp:
            config = os.path.join(tmp, "config.json")
            with open(config, "w") as f:
                json.dump({"architecture": "wasm", "os": "wasip2"}, f)
            # oras names the layer after the file; push from its folder so the name is bare.
            os.chdir(os.path.dirname(os.path.abspath(path)))
            client.push(
                target=target,
                files=[f"{os.path.basename(path)}:{WASM_LAYER}"],
                manifest_config=f"{config}:{WASM_CONFIG}",
                disable_path_validation=True,
            )
        manifest = client.get_manifest(target)
        print(json.dumps(manifest))
    elif command == "pull":
        target, outdir = args
        for path in client.pull(target=target, outdir=outdir):
            print(path)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
