# Shared by the benchmark scripts (sourced): the release build they all measure, and the
# peers they install when missing.
source scripts/setup.sh

# One set of packages, benches included, for every benchmark build: cargo unifies features
# over the packages (and dev-dependencies) it builds, so a different set would compile
# wasmtime a second time with other features.
build_release() {
  cargo build --release --quiet -p membrane -p membrane-bench --bins --benches
}

need_deb() { # command package
  command -v "$1" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null; }
}

# wasmtime-cli 48.0.8 on PATH, or built once into target/wasmtime-cli (kept with the builds).
need_wasmtime() {
  export PATH="$PWD/target/wasmtime-cli/bin:$PATH"
  if ! command -v wasmtime >/dev/null || ! wasmtime --version | grep -q '^wasmtime 48.0.8'; then
    cargo install wasmtime-cli@48.0.8 --locked --root target/wasmtime-cli
  fi
}

# For the soak scripts, which set $pid (the server) and $work (a scratch folder).
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }

# p50, p99 (ms) and non-200 count over the hey CSVs named.
summary() {
  cat "$@" | awk -F, 'NR > 1 && $1 ~ /^[0-9.]+$/ { print $1 * 1000, $7 }' | sort -n >"$work/sorted"
  awk '{ t[NR] = $1; if ($2 != 200) bad++ }
       END { p50 = t[int(NR * 0.50) > 0 ? int(NR * 0.50) : 1]; p99 = t[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1];
             printf "%d %.2f %.2f %d\n", NR, p50, p99, bad + 0 }' "$work/sorted"
}

# How many rows of hey CSV $1 have status $2.
count() { awk -F, -v s="$2" 'NR > 1 && $7 == s { n++ } END { print n + 0 }' "$1"; }

# wrk's latency figures come in us, ms or s; this prints them in ms.
to_ms() { awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v*=1000 }; printf "%.3f", v }'; }

# wrk for $seconds on 127.0.0.1:PORT/PATH (default /hello) with CONNECTIONS -> "rps p50 p99".
wrk_run() { # port connections [path]
  local threads=$(( $2 < 2 ? 1 : 2 ))
  local out
  out=$(wrk -t"$threads" -c"$2" -d"${seconds}s" --latency "http://127.0.0.1:$1${3:-/hello}")
  echo "$(awk '/^Requests\/sec/ { print $2 }' <<<"$out") $(awk '$1 == "50%" { print $2 }' <<<"$out" | to_ms) $(awk '$1 == "99%" { print $2 }' <<<"$out" | to_ms)"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# An OTLP/HTTP receiver on 127.0.0.1:PORT that takes each export (protobuf) and answers
# 200, as a collector does; its pid in $receiver, once it accepts connections.
start_receiver() { # port
  python3 - "$1" <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
PY
  receiver=$!
  for _ in $(seq 50); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $1))" 2>/dev/null && return
    sleep 0.1
  done
}

# A free port on 127.0.0.1.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wrk_run's "rps p50 p99" appended to the caller's associative array `figures`, under
# KEY.rps, KEY.p50 and KEY.p99; `med KEY.rps` is then the median of the runs.
wrk_figures() { # key port connections [path]
  local key=$1 rps p50 p99
  shift
  read -r rps p50 p99 < <(wrk_run "$@")
  figures[$key.rps]+="$rps "
  figures[$key.p50]+="$p50 "
  figures[$key.p99]+="$p99 "
}
med() { tr ' ' '\n' <<<"${figures[$1]}" | grep . | median; }
