//! The Kubernetes manifests and Dockerfile in `deploy/` name the image, ports, flags and
//! probes that the binary really has, and their app manifest is valid and serves.

use crate::state::{http, start_node};
use crate::util::{guests, membrane};
use serde::Deserialize as _;
use serde_yaml::Value;
use std::path::Path;

fn deploy() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy"))
}

/// Every document of every YAML file under `deploy/k8s`.
fn documents() -> Vec<Value> {
    let mut docs = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(deploy().join("k8s")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "yaml")) {
        let text = std::fs::read_to_string(file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!(value["kind"].is_string(), "{}: a document without kind", file.display());
            docs.push(value);
        }
    }
    docs
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name} in deploy/k8s"))
}

/// The port in an address flag's value such as `0.0.0.0:8080`.
fn flag_port(args: &[String], flag: &str) -> u64 {
    let at = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("the container args lack {flag}"));
    args[at + 1].rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn kubernetes_manifests_match_the_binary_and_its_dockerfile() {
    let docs = documents();
    let deployment = find(&docs, "Deployment", "membrane");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];

    // The image is this version of membrane.
    assert_eq!(container["image"].as_str().unwrap(), format!("membrane:{}", env!("CARGO_PKG_VERSION")));

    // Named ports are the ports the flags bind; the Dockerfile exposes them.
    let args: Vec<String> =
        container["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    assert_eq!(args[0], "serve");
    let port = |name: &str| {
        container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no container port named {name}"))["containerPort"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(port("http"), flag_port(&args, "--listen"));
    assert_eq!(port("admin"), flag_port(&args, "--admin-listen"));
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    let expose = format!("EXPOSE {} {}", port("http"), port("admin"));
    assert!(dockerfile.contains(&expose), "the Dockerfile lacks {expose}");

    // Probes: readiness and liveness on the admin listener's health endpoints.
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(get["port"].as_str(), Some("admin"), "{probe}");
    }

    // The Service sends traffic to the app port.
    let service = find(&docs, "Service", "membrane");
    assert_eq!(service["spec"]["ports"][0]["targetPort"].as_str(), Some("http"));
    assert_eq!(
        service["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"],
        "the Service selects the Deployment's pods"
    );

    // The app manifest comes from the ConfigMap, mounted where the args read it.
    let mount = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "app")
        .expect("the ConfigMap volume is mounted");
    let config_map = find(&docs, "ConfigMap", "membrane-app");
    let (key, toml) = config_map["data"].as_mapping().unwrap().iter().next().unwrap();
    assert_eq!(args[1], format!("{}/{}", mount["mountPath"].as_str().unwrap(), key.as_str().unwrap()));
    let toml = toml.as_str().unwrap();
    let spec = membrane_manifest::AppSpec::parse(Path::new("membrane.toml"), toml).unwrap();

    // Its Redis is the Redis Service of redis.yaml.
    let redis_service = find(&docs, "Service", "redis");
    let redis_port = redis_service["spec"]["ports"][0]["port"].as_u64().unwrap();
    let redis_url = spec.keyvalue.backend.redis_url().expect("the nodes share a Redis store");
    assert!(redis_url.starts_with(&format!("redis://redis:{redis_port}")), "{redis_url}");
    assert_eq!(find(&docs, "StatefulSet", "redis")["spec"]["serviceName"], "redis");

    // Every flag the pod passes exists in this binary.
    let help = membrane().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(help.contains(flag.as_str()), "membrane serve has no {flag}");
    }

    // The app serves state with the pod's flags, on loopback and the embedded store, with
    // the component and the secret of the image and the Secret in their place.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "from-the-secret").unwrap();
    let local = toml
        .replace("/app/state-web.wasm", guests::STATE_WEB)
        .replace("/var/run/secrets/membrane/token", dir.path().join("token").to_str().unwrap());
    let manifest = dir.path().join("membrane.toml");
    std::fs::write(&manifest, local).unwrap();
    let node = start_node(&manifest, &dir.path().join("data"), &["--keyvalue", "embedded"]);
    assert_eq!(http(node.addr, "POST", "/incr/notes/hits", ""), (200, "1".into()));
    assert_eq!(http(node.addr, "GET", "/config/token", ""), (200, "from-the-secret".into()));
    // The probes the manifests name answer on the admin listener.
    let admin = node.admin.expect("the admin listener is on");
    assert_eq!(http(admin, "GET", "/healthz", ""), (200, "ok".into()));
    assert_eq!(http(admin, "GET", "/readyz", ""), (200, "ready".into()));
}
