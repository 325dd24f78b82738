//! Consistency of the deployment files with gateway-ext itself (plain file
//! checks, no network, no Docker):
//!
//! - every env var set in `deploy/kubernetes/gateway-ext.yaml` and in
//!   `gateway-ext/Dockerfile` is a key documented in `src/config.rs` (its
//!   module table; `NATS_*` is farm-runtime's table);
//! - the probes hit a `GET` route gateway-ext serves (`src/http.rs` table) on
//!   the container's HTTP port;
//! - the Service `gateway-ext` in `openfaas` exposes that port under the
//!   host and port Alertmanager's webhook and Prometheus' target use;
//! - every `COPY` source of the Dockerfiles (`gateway-ext/Dockerfile`,
//!   `functions/Dockerfile`) exists relative to the repository
//!   root (its build context) and is not excluded by `.dockerignore`.
//! - `deploy/kubernetes/nats.yaml` is a JetStream cluster of at least 3
//!   servers whose routes are its pods, with file storage on per-pod volumes,
//!   served at stack.yml's and gateway-ext's NATS_URL; its config passes the
//!   real `nats-server -t`.
//!
//! Each check is a function over file contents returning the problems found,
//! so the `*_rejects_*` tests can feed it an edited copy and prove it fails.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("gateway-ext sits in the workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let p = root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The backticked names in the first cell of every `//! | ... |` table row.
fn table_keys(src: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for line in src.lines() {
        let Some(row) = line.trim_start().strip_prefix("//! |") else {
            continue;
        };
        let Some(first) = row.split('|').next() else {
            continue;
        };
        keys.extend(
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .filter(|k| !k.is_empty()),
        );
    }
    keys
}

/// Every env var gateway-ext documents: its own table, with a `PREFIX_*`
/// entry expanded to the keys of `runtime_src` (farm-runtime's table) that
/// start with `PREFIX_`.
fn documented_keys(config_src: &str, runtime_src: &str) -> BTreeSet<String> {
    let runtime = table_keys(runtime_src);
    let mut out = BTreeSet::new();
    for k in table_keys(config_src) {
        if let Some(prefix) = k.strip_suffix('*') {
            out.extend(runtime.iter().filter(|r| r.starts_with(prefix)).cloned());
        } else if k
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            out.insert(k);
        }
    }
    out
}

fn docs(manifest: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(manifest)
        .map(|d| Value::deserialize(d).expect("valid YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
}

fn container(docs: &[Value]) -> Result<&Value, String> {
    let dep = kind(docs, "Deployment", "gateway-ext").ok_or("no Deployment gateway-ext")?;
    dep["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .and_then(|c| c.iter().find(|c| c["name"].as_str() == Some("gateway-ext")))
        .ok_or_else(|| "no container gateway-ext".to_string())
}

fn env_names(c: &Value) -> Vec<String> {
    c["env"]
        .as_sequence()
        .map(|e| {
            e.iter()
                .filter_map(|v| v["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Env var names the manifest sets that gateway-ext does not document.
fn check_manifest_env(manifest: &str, keys: &BTreeSet<String>) -> Result<(), String> {
    let d = docs(manifest);
    let names = env_names(container(&d)?);
    if !names.iter().any(|n| n == "UPSTREAM_URL") {
        return Err("UPSTREAM_URL (required) is not set".into());
    }
    let unknown: Vec<_> = names.iter().filter(|n| !keys.contains(*n)).collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!("undocumented env vars: {unknown:?}"))
    }
}

/// Dockerfile lines with `\` continuations joined.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in dockerfile.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                cur.push_str(part);
                cur.push(' ');
            }
            None => {
                cur.push_str(t);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out
}

/// Env var names of the Dockerfile's `ENV KEY=value ...` instructions that
/// gateway-ext does not document.
fn check_dockerfile_env(dockerfile: &str, keys: &BTreeSet<String>) -> Result<(), String> {
    let mut names = Vec::new();
    for ins in instructions(dockerfile) {
        if let Some(rest) = ins.strip_prefix("ENV ") {
            // Values are quoted without spaces, so splitting on whitespace
            // yields one KEY=value per token.
            names.extend(
                rest.split_whitespace()
                    .filter_map(|t| t.split_once('=').map(|(k, _)| k.to_string())),
            );
        }
    }
    if names.is_empty() {
        return Err("no ENV in the Dockerfile (ORT_DYLIB_PATH must be set)".into());
    }
    let unknown: Vec<_> = names.iter().filter(|n| !keys.contains(*n)).collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!("undocumented env vars in ENV: {unknown:?}"))
    }
}

/// `GET` paths of the route table in `src/http.rs` (without parameters).
fn get_routes(http_src: &str) -> BTreeSet<String> {
    table_keys(http_src)
        .into_iter()
        .filter_map(|k| k.strip_prefix("GET ").map(str::to_string))
        .filter(|p| !p.contains('{'))
        .collect()
}

/// The container port a probe or Service `targetPort` names (by name or
/// number).
fn resolve_port(c: &Value, port: &Value) -> Option<u64> {
    let ports = c["ports"].as_sequence()?;
    if let Some(n) = port.as_u64() {
        return ports
            .iter()
            .filter_map(|p| p["containerPort"].as_u64())
            .find(|&p| p == n);
    }
    let name = port.as_str()?;
    ports
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_u64())
}

/// Port of `GATEWAY_EXT_HTTP_ADDR` as set on the container, else the
/// documented default 8080.
fn http_listen_port(c: &Value) -> Result<u64, String> {
    let addr = c["env"]
        .as_sequence()
        .and_then(|e| {
            e.iter()
                .find(|v| v["name"].as_str() == Some("GATEWAY_EXT_HTTP_ADDR"))
        })
        .and_then(|v| v["value"].as_str())
        .unwrap_or("0.0.0.0:8080");
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .ok_or_else(|| format!("GATEWAY_EXT_HTTP_ADDR {addr:?} has no port"))
}

/// Both probes are `httpGet` on a served `GET` route, on the port
/// gateway-ext listens on.
fn check_probes(manifest: &str, routes: &BTreeSet<String>) -> Result<(), String> {
    let d = docs(manifest);
    let c = container(&d)?;
    let listen = http_listen_port(c)?;
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &c[probe]["httpGet"];
        let path = get["path"]
            .as_str()
            .ok_or_else(|| format!("{probe} has no httpGet.path"))?;
        if !routes.contains(path) {
            return Err(format!(
                "{probe} path {path} is not a GET route of gateway-ext ({routes:?})"
            ));
        }
        let port = resolve_port(c, &get["port"])
            .ok_or_else(|| format!("{probe} port {:?} is no container port", get["port"]))?;
        if port != listen {
            return Err(format!(
                "{probe} port {port} is not the HTTP listen port {listen}"
            ));
        }
    }
    Ok(())
}

/// `(host, port)` of an `http://host:port/...` URL.
fn host_port(url: &str) -> Option<(String, u64)> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    Some((host.to_string(), port.parse().ok()?))
}

/// The Service is reachable as `gateway-ext.openfaas:<port>` where `url`
/// says, and that port leads to the container's HTTP listen port.
fn check_service(manifest: &str, url: &str) -> Result<(), String> {
    let d = docs(manifest);
    let c = container(&d)?;
    let listen = http_listen_port(c)?;
    let svc = kind(&d, "Service", "gateway-ext").ok_or("no Service gateway-ext")?;
    let ns = svc["metadata"]["namespace"].as_str().unwrap_or("default");
    let (host, port) =
        host_port(url).ok_or_else(|| format!("{url} is not http://host:port/..."))?;
    let expected_host = format!("gateway-ext.{ns}");
    if host != expected_host {
        return Err(format!(
            "{url} names host {host}, the Service is {expected_host}"
        ));
    }
    let ports = svc["spec"]["ports"]
        .as_sequence()
        .ok_or("Service has no ports")?;
    let sp = ports
        .iter()
        .find(|p| p["port"].as_u64() == Some(port))
        .ok_or_else(|| format!("Service has no port {port} (used by {url})"))?;
    // targetPort defaults to port.
    let target = if sp["targetPort"].is_null() {
        &sp["port"]
    } else {
        &sp["targetPort"]
    };
    let cport = resolve_port(c, target)
        .ok_or_else(|| format!("Service targetPort {target:?} is no container port"))?;
    if cport != listen {
        return Err(format!(
            "Service port {port} leads to container port {cport}, gateway-ext listens on {listen}"
        ));
    }
    Ok(())
}

/// The webhook URL of `deploy/alertmanager/alertmanager.yml`.
fn alertmanager_url(src: &str) -> String {
    let v: Value = serde_yaml::from_str(src).expect("alertmanager.yml parses");
    v["receivers"][0]["webhook_configs"][0]["url"]
        .as_str()
        .expect("a webhook url")
        .to_string()
}

/// The gateway-ext scrape target of `deploy/prometheus/prometheus.yml`, as a
/// URL.
fn prometheus_target(src: &str) -> String {
    let v: Value = serde_yaml::from_str(src).expect("prometheus.yml parses");
    let job = v["scrape_configs"]
        .as_sequence()
        .and_then(|s| {
            s.iter()
                .find(|j| j["job_name"].as_str() == Some("gateway-ext"))
        })
        .expect("a gateway-ext scrape job");
    let target = job["static_configs"][0]["targets"][0]
        .as_str()
        .expect("a target");
    format!("http://{target}/metrics")
}

/// Whether `.dockerignore` (root-anchored patterns, as Docker reads them)
/// excludes `rel` or a folder above it. Only the plain and `**/` forms the
/// file uses are understood.
fn ignored(dockerignore: &str, rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    dockerignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .any(|pat| match pat.strip_prefix("**/") {
            Some(name) => parts.contains(&name),
            None => (1..=parts.len()).any(|n| parts[..n].join("/") == pat),
        })
}

/// Every `COPY` source from the build context exists under `root` and is
/// not excluded by `dockerignore`.
fn check_copy_sources(dockerfile: &str, root: &Path, dockerignore: &str) -> Result<(), String> {
    let mut seen = 0;
    for ins in instructions(dockerfile) {
        let Some(rest) = ins.strip_prefix("COPY ") else {
            continue;
        };
        let args: Vec<&str> = rest.split_whitespace().collect();
        if args.iter().any(|a| a.starts_with("--from=")) {
            continue;
        }
        let plain: Vec<&str> = args.into_iter().filter(|a| !a.starts_with("--")).collect();
        let Some((_, sources)) = plain.split_last() else {
            return Err(format!("COPY without arguments: {ins}"));
        };
        for s in sources {
            seen += 1;
            let rel = s.trim_start_matches("./").trim_end_matches('/');
            if !root.join(rel).exists() {
                return Err(format!(
                    "COPY source {s} does not exist in {}",
                    root.display()
                ));
            }
            if ignored(dockerignore, rel) {
                return Err(format!("COPY source {s} is excluded by .dockerignore"));
            }
        }
    }
    if seen == 0 {
        return Err("no COPY from the build context".into());
    }
    Ok(())
}

fn keys() -> BTreeSet<String> {
    documented_keys(
        &read("gateway-ext/src/config.rs"),
        &read("template/rust-farm/runtime/src/config.rs"),
    )
}

const MANIFEST: &str = "deploy/kubernetes/gateway-ext.yaml";
const DOCKERFILE: &str = "gateway-ext/Dockerfile";

fn dockerignore() -> String {
    std::fs::read_to_string(root().join(".dockerignore")).unwrap_or_default()
}

#[test]
fn documented_keys_include_own_and_nats_keys() {
    let k = keys();
    for key in [
        "UPSTREAM_URL",
        "SECRET_MOUNT_PATH",
        "MAX_REPLICAS",
        "NATS_URL",
        "NATS_TOKEN_FILE",
    ] {
        assert!(k.contains(key), "{key} missing from {k:?}");
    }
    // farm-runtime's worker keys are not gateway-ext's.
    assert!(!k.contains("FARM_NAME"), "{k:?}");
}

#[test]
fn manifest_env_is_documented() {
    check_manifest_env(&read(MANIFEST), &keys()).unwrap();
}

#[test]
fn manifest_env_check_rejects_unknown_and_missing_keys() {
    let m = read(MANIFEST);
    let typo = m.replacen("name: NATS_URL", "name: NATS_ADDR", 1);
    assert_ne!(typo, m);
    let e = check_manifest_env(&typo, &keys()).unwrap_err();
    assert!(e.contains("NATS_ADDR"), "{e}");
    let missing = m.replacen("name: UPSTREAM_URL", "name: PROVIDER_URL", 1);
    assert!(check_manifest_env(&missing, &keys()).is_err());
}

#[test]
fn dockerfile_env_is_documented() {
    check_dockerfile_env(&read(DOCKERFILE), &keys()).unwrap();
}

#[test]
fn dockerfile_env_check_rejects_unknown_key() {
    let d = read(DOCKERFILE);
    let typo = d.replacen("ORT_DYLIB_PATH=", "ORT_LIB_PATH=", 1);
    assert_ne!(typo, d);
    let e = check_dockerfile_env(&typo, &keys()).unwrap_err();
    assert!(e.contains("ORT_LIB_PATH"), "{e}");
}

#[test]
fn probes_hit_served_routes() {
    let routes = get_routes(&read("gateway-ext/src/http.rs"));
    assert!(routes.contains("/healthz"), "{routes:?}");
    check_probes(&read(MANIFEST), &routes).unwrap();
}

#[test]
fn probe_check_rejects_unserved_path_and_wrong_port() {
    let routes = get_routes(&read("gateway-ext/src/http.rs"));
    let m = read(MANIFEST);
    let path = m.replacen("path: /healthz", "path: /health", 1);
    assert_ne!(path, m);
    assert!(
        check_probes(&path, &routes)
            .unwrap_err()
            .contains("/health ")
    );
    let port = m.replacen("port: http\n", "port: grpc\n", 1);
    assert_ne!(port, m);
    assert!(check_probes(&port, &routes).is_err());
}

#[test]
fn service_matches_alertmanager_and_prometheus() {
    let m = read(MANIFEST);
    let am = alertmanager_url(&read("deploy/alertmanager/alertmanager.yml"));
    check_service(&m, &am).unwrap();
    let prom = prometheus_target(&read("deploy/prometheus/prometheus.yml"));
    check_service(&m, &prom).unwrap();
}

#[test]
fn service_check_rejects_mismatched_ports_and_host() {
    let m = read(MANIFEST);
    let url = "http://gateway-ext.openfaas:8080/system/alert";
    check_service(&m, url).unwrap();
    // The Service exposes another port than the webhook uses.
    let svc_port = m.replacen("      port: 8080\n", "      port: 9090\n", 1);
    assert_ne!(svc_port, m);
    assert!(check_service(&svc_port, url).is_err());
    // gateway-ext listens elsewhere than the container port.
    let listen = m.replacen("value: 0.0.0.0:8080", "value: 0.0.0.0:8081", 1);
    assert_ne!(listen, m);
    assert!(check_service(&listen, url).is_err());
    // The webhook names another namespace.
    assert!(check_service(&m, "http://gateway-ext.default:8080/system/alert").is_err());
}

#[test]
fn dockerfile_copy_sources_exist() {
    check_copy_sources(&read(DOCKERFILE), &root(), &dockerignore()).unwrap();
}

#[test]
fn functions_dockerfile_copy_sources_exist() {
    check_copy_sources(&read("functions/Dockerfile"), &root(), &dockerignore()).unwrap();
}

#[test]
fn copy_check_rejects_missing_and_ignored_sources() {
    let d = read(DOCKERFILE);
    let missing = d.replacen("COPY proto ./proto", "COPY protos ./proto", 1);
    assert_ne!(missing, d);
    assert!(
        check_copy_sources(&missing, &root(), &dockerignore())
            .unwrap_err()
            .contains("protos")
    );
    let e = check_copy_sources(&d, &root(), "models\n").unwrap_err();
    assert!(e.contains("excluded"), "{e}");
    assert!(check_copy_sources(&d, &root(), "**/crates\n").is_err());
}

/// A function's `labels` or `annotations` in stack.yml as text (numbers
/// and booleans as written, as farmctl and faas-cli pass them on).
fn text_map(function: &Value, key: &str) -> BTreeMap<String, String> {
    function[key]
        .as_mapping()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
            };
            (k.as_str().expect("string keys").to_owned(), v)
        })
        .collect()
}

#[test]
fn stack_yml_worker_declares_a_farm_gateway_ext_accepts() {
    let stack: Value = serde_yaml::from_str(&read("stack.yml")).expect("stack.yml parses");
    let worker = &stack["functions"]["demo-worker"];
    let mut ann = text_map(worker, "annotations");
    let labels = text_map(worker, "labels");
    let env = HashMap::from([("UPSTREAM_URL".to_string(), "http://127.0.0.1:1".to_string())]);
    let defaults = gateway_ext::config::Config::from_map(&env)
        .unwrap()
        .defaults;
    let spec = gateway_ext::config::farm_from_function("demo-worker", &ann, &labels, &defaults);
    assert!(matches!(spec, Some(Ok(_))), "{spec:?}");
    // The same worker with a policy gateway-ext does not know is refused.
    ann.insert("com.rust-farm.policy".into(), "no-such-policy".into());
    let spec = gateway_ext::config::farm_from_function("demo-worker", &ann, &labels, &defaults);
    assert!(matches!(spec, Some(Err(_))), "{spec:?}");
}

/// The root stack.yml's emitter and collector name the worker's farm and
/// keep their role label: gateway-ext does not take them for farm
/// declarations, and an alert on either (the CE alert names the emitter,
/// which receives the HTTP load) maps to the worker's farm.
#[test]
fn stack_yml_companions_name_the_workers_farm() {
    let stack: Value = serde_yaml::from_str(&read("stack.yml")).expect("stack.yml parses");
    let functions = &stack["functions"];
    let worker_farm = text_map(&functions["demo-worker"], "annotations")
        .get("com.rust-farm.farm")
        .cloned()
        .expect("the worker declares its farm");
    let env = HashMap::from([("UPSTREAM_URL".to_string(), "http://127.0.0.1:1".to_string())]);
    let defaults = gateway_ext::config::Config::from_map(&env)
        .unwrap()
        .defaults;
    for (name, role) in [("demo-emitter", "emitter"), ("demo-collector", "collector")] {
        let f = &functions[name];
        let ann = text_map(f, "annotations");
        let labels = text_map(f, "labels");
        assert_eq!(
            labels.get("com.rust-farm.role").map(String::as_str),
            Some(role),
            "{name}"
        );
        assert_eq!(
            gateway_ext::config::alert_farm(&ann, &labels),
            Some(worker_farm.clone()),
            "{name}: its alerts drive the worker's farm"
        );
        assert!(
            gateway_ext::config::farm_from_function(name, &ann, &labels, &defaults).is_none(),
            "{name} declares no farm of its own"
        );
    }
}

/// The problems of `deploy/kubernetes/nats.yaml` as a JetStream cluster for
/// the farms: its routes name exactly the StatefulSet's pods through its
/// headless Service, JetStream stores files on a per-pod volume, and the
/// client Service is the `host:port` of `nats_url` (stack.yml's NATS_URL).
fn check_nats_cluster(manifest: &str, nats_url: &str) -> Result<(), String> {
    let d = docs(manifest);
    let sts = kind(&d, "StatefulSet", "nats").ok_or("no StatefulSet nats")?;
    let ns = sts["metadata"]["namespace"].as_str().unwrap_or("default");
    let n = sts["spec"]["replicas"]
        .as_u64()
        .ok_or("StatefulSet nats has no replicas")?;
    if n < 3 {
        return Err(format!("{n} NATS servers cannot keep R3 streams (need 3)"));
    }
    let headless = sts["spec"]["serviceName"]
        .as_str()
        .ok_or("no serviceName")?;
    let hs = kind(&d, "Service", headless).ok_or_else(|| format!("no Service {headless}"))?;
    if hs["spec"]["clusterIP"].as_str() != Some("None") {
        return Err(format!("Service {headless} is not headless"));
    }
    let conf = kind(&d, "ConfigMap", "nats-config").ok_or("no ConfigMap nats-config")?["data"]
        ["nats.conf"]
        .as_str()
        .ok_or("no nats.conf in nats-config")?;
    let routes: BTreeSet<String> = conf
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("nats://") && l.ends_with(":6222"))
        .map(str::to_owned)
        .collect();
    let pods: BTreeSet<String> = (0..n)
        .map(|i| format!("nats://nats-{i}.{headless}.{ns}.svc.cluster.local:6222"))
        .collect();
    if routes != pods {
        return Err(format!("routes {routes:?} are not the pods {pods:?}"));
    }
    let store = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("store_dir:"))
        .map(str::trim)
        .ok_or("JetStream has no store_dir (file storage)")?;
    let spec = &sts["spec"]["template"]["spec"];
    let mounts = spec["containers"][0]["volumeMounts"]
        .as_sequence()
        .ok_or("no volumeMounts")?;
    let claims: Vec<&str> = sts["spec"]["volumeClaimTemplates"]
        .as_sequence()
        .map(|c| {
            c.iter()
                .filter_map(|c| c["metadata"]["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    let on_claim = mounts.iter().any(|m| {
        m["mountPath"]
            .as_str()
            .is_some_and(|p| store.starts_with(p))
            && m["name"].as_str().is_some_and(|n| claims.contains(&n))
    });
    if !on_claim {
        return Err(format!("store_dir {store} is not on a volumeClaimTemplate"));
    }
    let rest = nats_url
        .strip_prefix("nats://")
        .ok_or("NATS_URL is not nats://")?;
    let (host, port) = rest.rsplit_once(':').ok_or("NATS_URL has no port")?;
    let (svc_name, svc_ns) = host.split_once('.').unwrap_or((host, "default"));
    let svc = kind(&d, "Service", svc_name).ok_or_else(|| format!("no Service {svc_name}"))?;
    if svc["metadata"]["namespace"].as_str() != Some(svc_ns)
        || !svc["spec"]["ports"]
            .as_sequence()
            .is_some_and(|p| p.iter().any(|p| p["port"].as_u64() == port.parse().ok()))
    {
        return Err(format!(
            "Service {svc_name} in {svc_ns} does not serve {nats_url}"
        ));
    }
    Ok(())
}

#[test]
fn nats_cluster_manifest_serves_the_farms() {
    let stack: Value = serde_yaml::from_str(&read("stack.yml")).unwrap();
    let url = stack["functions"]["demo-worker"]["environment"]["NATS_URL"]
        .as_str()
        .unwrap()
        .to_owned();
    check_nats_cluster(&read("deploy/kubernetes/nats.yaml"), &url).unwrap();
    // gateway-ext reads the same server.
    let d = docs(&read("deploy/kubernetes/gateway-ext.yaml"));
    let env = container(&d).unwrap()["env"].as_sequence().unwrap().clone();
    let gw = env.iter().find(|e| e["name"] == "NATS_URL").unwrap();
    assert_eq!(gw["value"].as_str(), Some(url.as_str()));
}

#[test]
fn nats_cluster_check_rejects_a_missing_route_a_memory_store_and_another_url() {
    let m = read("deploy/kubernetes/nats.yaml");
    let url = "nats://nats.openfaas:4222";
    let edits = [
        (
            "        nats://nats-2.nats-cluster.openfaas.svc.cluster.local:6222\n",
            "",
            "are not the pods",
        ),
        ("      store_dir: /data/jetstream\n", "", "no store_dir"),
        ("  replicas: 3\n", "  replicas: 1\n", "cannot keep R3"),
    ];
    for (from, to, want) in edits {
        assert!(m.contains(from), "{from:?} not in the manifest");
        let err = check_nats_cluster(&m.replace(from, to), url).unwrap_err();
        assert!(err.contains(want), "{err}");
    }
    let err = check_nats_cluster(&m, "nats://nats.other:4222").unwrap_err();
    assert!(err.contains("does not serve"), "{err}");
}

/// The real nats-server accepts the manifest's config (`-t`: parse, check,
/// exit), with `POD_NAME` set as the StatefulSet sets it.
#[test]
fn nats_cluster_config_passes_nats_server_t() {
    let d = docs(&read("deploy/kubernetes/nats.yaml"));
    let conf = kind(&d, "ConfigMap", "nats-config").unwrap()["data"]["nats.conf"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nats.conf");
    // The store directory of the pod's volume, moved into the temp dir.
    std::fs::write(
        &path,
        conf.replace(
            "/data/jetstream",
            &dir.path().join("js").display().to_string(),
        ),
    )
    .unwrap();
    let bin = farm_testsupport::nats_server_binary().unwrap();
    let out = std::process::Command::new(bin)
        .args(["-c", path.to_str().unwrap(), "-t"])
        .env("POD_NAME", "nats-0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nats-server -t refused the config:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
