#!/usr/bin/env python3
"""Checks the deployment files in deploy/ against each other and against the
flotilla binary.

    python3 deploy/check.py [BINARY] [--smoke]

BINARY defaults to target/debug/flotilla (relative to the repository root).
Needs Python 3.11+ and PyYAML. Prints one line per check and exits non-zero
when one fails.

What it checks, without Docker or a Kubernetes cluster:
  * every YAML file parses (all its documents), every TOML file parses, and so
    does the gateway configuration inside the Kubernetes ConfigMap;
  * every FLOTILLA_* variable set in compose.yaml, the Kubernetes manifests,
    the Secret template and the Dockerfile is one the binary reads (as its
    --help lists them, for the subcommand the container runs);
  * ports: health checks and probes, published and exposed ports, gateway
    upstreams, Prometheus targets and Services agree with the port each
    container listens on;
  * every file that compose.yaml, the Dockerfile and kustomization.yaml refer
    to exists, and the Dockerfile copies every workspace member;
  * the services that `flotilla serve --help` lists are exactly those that
    compose.yaml and the Kubernetes Deployments run and both gateway
    configurations route to;
  * Service selectors, Deployment selectors, HPA targets, ConfigMap and Secret
    references resolve; each container runs as the image's non-root user on a
    read-only root filesystem, with probes and resources;
  * each gateway configuration loads in the real binary, which keeps running
    (a name that does not resolve here is only a warning) and serves its
    routes; a broken configuration is rejected (control);
  * the Compose health check command passes on a healthy process and fails on
    one that answers 503 and on a closed port;
  * when installed: check-jsonschema against the Compose specification, and
    kubernetes-validate (strict) on the manifests as kustomize renders them.

--smoke also runs the Compose topology as local processes (the replicas of
each service at once, then the gateway with deploy/gateway.toml pointed at
them) on the PostgreSQL, NATS and Redis servers named by
FLOTILLA_TEST_POSTGRES_URL, FLOTILLA_TEST_NATS_URL and FLOTILLA_TEST_REDIS_URL,
sends a user through the gateway and waits for its notification, sends a kv
pair around and waits for it on the websocket, stores a kv batch; it removes
its schemas, stream and Redis keys afterwards.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("check.py needs PyYAML: pip install pyyaml")

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
K8S = DEPLOY / "k8s"

results = {"ok": 0, "fail": 0, "skip": 0}


def report(ok: bool | None, name: str, detail: str = "") -> bool:
    """One line per check: ok, FAIL or skip (None)."""
    tag = {True: "ok  ", False: "FAIL", None: "skip"}[ok]
    results[{True: "ok", False: "fail", None: "skip"}[ok]] += 1
    print(f"{tag} {name}" + (f": {detail}" if detail else ""), flush=True)
    return bool(ok)


# Names to show for files that check.py writes itself.
DISPLAY: dict[Path, str] = {}


def rel(path: Path) -> str:
    if path in DISPLAY:
        return DISPLAY[path]
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------
# The binary


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without FLOTILLA_* and RUST_LOG, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_") and k != "RUST_LOG"}
    env.update(extra)
    return env


def help_env_names(binary: Path, *args: str) -> set[str]:
    out = subprocess.run(
        [str(binary), *args, "--help"], capture_output=True, text=True, env=clean_env(), timeout=30
    )
    if out.returncode != 0:
        raise RuntimeError(f"{binary} {' '.join(args)} --help exited {out.returncode}: {out.stderr.strip()}")
    # A secret's value is hidden: `[env: NAME]` rather than `[env: NAME=]`.
    return set(re.findall(r"\[env: ([A-Z0-9_]+)[=\]]", out.stdout))


def served_services(binary: Path) -> set[str]:
    """The services `flotilla serve` runs, as its help lists them, the gateway aside."""
    out = subprocess.run(
        [str(binary), "serve", "-h"], capture_output=True, text=True, env=clean_env(), timeout=30
    )
    m = re.search(r"<SERVICE>.*?\[possible values: ([^\]]+)\]", out.stdout, re.S)
    return {v.strip() for v in m.group(1).split(",")} - {"gateway"} if m else set()


class Process:
    """A flotilla process whose stdout announces `<name> listening on http://HOST:PORT`."""

    def __init__(self, binary: Path, args: list[str], env: dict[str, str], logdir: Path, label: str):
        self.label = label
        self.stderr_path = logdir / f"{label}.stderr"
        self.stderr_file = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [str(binary), *args],
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=logdir,
        )
        self.proc_env = env
        self.port: int | None = None

    def wait_listening(self, timeout: float) -> int | None:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline and self.proc.poll() is None:
            if not sel.select(timeout=0.2):
                continue
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            match = re.search(rb"listening on http://[^\s:]+:(\d+)", buf)
            if match:
                self.port = int(match.group(1))
                return self.port
        return None

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        self.stderr_file.close()
        return self.proc.returncode

    def log_records(self) -> list[dict]:
        records = []
        for line in self.stderr_path.read_text(errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                records.append({"level": "RAW", "message": line})
        return records


def http(method: str, url: str, body: dict | None = None, timeout: float = 5) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


# --------------------------------------------------------------------------
# Loading the files


def load_yaml_files() -> dict[Path, list]:
    docs: dict[Path, list] = {}
    for path in sorted(DEPLOY.rglob("*")):
        if path.suffix not in (".yaml", ".yml"):
            continue
        try:
            with open(path) as f:
                loaded = [d for d in yaml.safe_load_all(f) if d is not None]
            docs[path] = loaded
            report(True, f"yaml parses: {rel(path)}", f"{len(loaded)} document(s)")
        except yaml.YAMLError as err:
            report(False, f"yaml parses: {rel(path)}", str(err).replace("\n", " "))
    return docs


def load_toml_files() -> dict[Path, dict]:
    tomls: dict[Path, dict] = {}
    for path in sorted(DEPLOY.rglob("*.toml")):
        try:
            tomls[path] = tomllib.loads(path.read_text())
            report(True, f"toml parses: {rel(path)}")
        except tomllib.TOMLDecodeError as err:
            report(False, f"toml parses: {rel(path)}", str(err))
            tomls[path] = {}  # still given to the binary, which must reject it too
    return tomls


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.partition(" ")
        instructions.append((word.upper(), rest.strip()))
        current = ""
    return instructions


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions:
        if word == "FROM":
            env = {}  # only the last stage is the image
        elif word == "ENV":
            for key, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", rest):
                env[key] = value.strip('"')
    return env


def dockerignore_excludes(patterns: list[str], name: str) -> bool:
    import fnmatch

    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if pattern.startswith("**/"):
            pattern = pattern[3:]
        if fnmatch.fnmatch(name, pattern):
            excluded = not negate
    return excluded


# --------------------------------------------------------------------------
# Compose


def env_map(environment) -> dict[str, str | None]:
    if environment is None:
        return {}
    if isinstance(environment, list):
        out = {}
        for item in environment:
            key, sep, value = str(item).partition("=")
            out[key] = value if sep else None
        return out
    return {k: (None if v is None else str(v)) for k, v in environment.items()}


def compose_services(compose: dict) -> dict[str, str]:
    """Compose service -> the service its flotilla container runs (`serve NAME`), the gateway aside."""
    services = compose.get("services") or {}
    image = (services.get("gateway") or {}).get("image")
    return {name: svc["command"][1] for name, svc in services.items()
            if svc.get("image") == image and (svc.get("command") or [])[:1] == ["serve"]
            and svc["command"][1:2] != ["gateway"]}


def healthcheck_command(check: dict) -> str | None:
    test = check.get("test")
    if isinstance(test, list) and test[:3] == ["CMD", "bash", "-c"]:
        return test[3].replace("$$", "$")
    return None


def check_compose(docs: dict[Path, list], env_names: dict[str, set[str]], image_env: dict[str, str],
                  exposed: set[str], gateway_tomls: dict[Path, dict]) -> dict:
    path = DEPLOY / "compose.yaml"
    compose = docs.get(path, [None])[0]
    if not isinstance(compose, dict):
        report(False, "compose.yaml loaded")
        return {}
    services: dict[str, dict] = compose.get("services", {})

    # The issuer the gateway checks tokens against is the auth service's.
    public_urls = {name: env_map(svc.get("environment")).get("FLOTILLA_PUBLIC_URL")
                   for name, svc in services.items() if (svc.get("command") or [None])[0] == "serve"}
    report(bool(public_urls) and None not in public_urls.values() and len(set(public_urls.values())) == 1,
           "compose: the gateway and every service have one FLOTILLA_PUBLIC_URL", str(public_urls))

    # Files it refers to.
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            context = (DEPLOY / build.get("context", ".")).resolve()
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            report(context.is_dir(), f"compose {name}: build context exists", rel(context) or ".")
            report(dockerfile.is_file(), f"compose {name}: Dockerfile exists", rel(dockerfile))
            ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
            report(ignore.is_file(), f"compose {name}: {ignore.name} beside the Dockerfile")
        for ref in svc.get("configs", []):
            source = ref["source"] if isinstance(ref, dict) else ref
            known = source in compose.get("configs", {})
            report(known, f"compose {name}: config `{source}` is defined")
        for volume in svc.get("volumes", []):
            src = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if src.startswith((".", "/")):
                report((DEPLOY / src).exists(), f"compose {name}: bind mount {src} exists")
            else:
                report(src in (compose.get("volumes") or {}), f"compose {name}: volume `{src}` is declared")
        for dep in (svc.get("depends_on") or {}):
            report(dep in services, f"compose {name}: depends_on `{dep}` is a service")
    for cname, config in (compose.get("configs") or {}).items():
        file = DEPLOY / config["file"]
        report(file.is_file(), f"compose config `{cname}`: file exists", rel(file))

    # The flotilla containers: variables, ports, health checks.
    flotilla = {n: s for n, s in services.items() if s.get("image") == services.get("gateway", {}).get("image")}
    ports: dict[str, int] = {}
    for name, svc in flotilla.items():
        command = svc.get("command") or ["up"]
        subcommand = command[0]
        env = {**image_env, **{k: v for k, v in env_map(svc.get("environment")).items()}}
        unknown = sorted(k for k in env if k.startswith("FLOTILLA_") and k not in env_names[subcommand])
        report(not unknown, f"compose {name}: variables are read by `flotilla {subcommand}`",
               ", ".join(unknown) or f"{sum(k.startswith('FLOTILLA_') for k in env)} variable(s)")
        port = int(env.get("FLOTILLA_PORT") or 0)
        ports[name] = port
        report(str(port) in exposed, f"compose {name}: listens on the image's EXPOSEd port", str(port))
        for published in svc.get("ports", []):
            container_port = int(str(published).split(":")[-1].split("/")[0])
            report(container_port == port, f"compose {name}: published port reaches the listening port",
                   f"{published} vs {port}")
        for exp in svc.get("expose", []):
            report(int(exp) == port, f"compose {name}: exposed port is the listening port", f"{exp} vs {port}")
        hc = svc.get("healthcheck") or {}
        cmd = healthcheck_command(hc)
        uses_var = cmd is not None and "${FLOTILLA_PORT" in cmd
        literal = re.search(r"/dev/tcp/[^/]+/(\d+)", cmd or "")
        report(uses_var or (literal and int(literal.group(1)) == port),
               f"compose {name}: health check asks the listening port",
               "FLOTILLA_PORT" if uses_var else (literal.group(1) if literal else "no /dev/tcp command"))
        report("/health" in (cmd or ""), f"compose {name}: health check asks /health")
        if subcommand == "serve" and command[1] != "gateway":
            report(set(svc.get("depends_on", {})) >= {"postgres", "nats"} and all(
                d.get("condition") == "service_healthy" for d in svc["depends_on"].values()),
                f"compose {name}: waits for healthy postgres and nats")
            for key, scheme in (("FLOTILLA_DB", "postgres"), ("FLOTILLA_BUS", "nats")):
                url = env.get(key) or ""
                host = re.match(rf"{scheme}(?:ql)?://(?:[^@/]*@)?([^:/?]+)", url)
                report(bool(host) and host.group(1) in services,
                       f"compose {name}: {key} names a Compose service", host.group(1) if host else url)
            if env.get("FLOTILLA_REDIS"):
                url = env["FLOTILLA_REDIS"]
                host = re.match(r"rediss?://(?:[^@/]*@)?([^:/?]+)", url)
                report(bool(host) and host.group(1) in services,
                       f"compose {name}: FLOTILLA_REDIS names a Compose service",
                       host.group(1) if host else url)
                if host:
                    dep = (svc.get("depends_on") or {}).get(host.group(1)) or {}
                    report(dep.get("condition") == "service_healthy",
                           f"compose {name}: waits for healthy {host.group(1)}")
            if "postgres" in services and env.get("FLOTILLA_DB"):
                pg_env = env_map(services["postgres"].get("environment"))
                m = re.match(r"postgres(?:ql)?://([^:@]+):([^@]+)@[^/]+/([^?]+)", env["FLOTILLA_DB"])
                report(bool(m) and (m.group(1), m.group(2), m.group(3)) == (
                    pg_env.get("POSTGRES_USER"), pg_env.get("POSTGRES_PASSWORD"), pg_env.get("POSTGRES_DB")),
                    f"compose {name}: FLOTILLA_DB matches the postgres service's user, password and database")
    gateway = flotilla.get("gateway")
    if gateway:
        env = {**image_env, **env_map(gateway.get("environment"))}
        cfg_path = env.get("FLOTILLA_GATEWAY_CONFIG")
        mounted = [c for c in gateway.get("configs", []) if isinstance(c, dict) and c.get("target") == cfg_path]
        report(bool(mounted), "compose gateway: FLOTILLA_GATEWAY_CONFIG is a mounted config", str(cfg_path))
        if mounted:
            file = (DEPLOY / compose["configs"][mounted[0]["source"]]["file"]).resolve()
            routes = gateway_tomls.get(file, {}).get("route", [])
            for route in routes:
                for upstream in route.get("upstreams", []):
                    url = upstream if isinstance(upstream, str) else upstream["url"]
                    m = re.match(r"http://([^:/]+):(\d+)", url)
                    target = m and flotilla.get(m.group(1))
                    report(bool(target) and ports.get(m.group(1)) == int(m.group(2)),
                           f"compose gateway.toml {route['prefix']}: upstream is a service on its port", url)
                    if target:
                        served = (target.get("command") or [None, None])[1]
                        report(served == route.get("service"),
                               f"compose gateway.toml {route['prefix']}: upstream runs service `{route.get('service')}`",
                               f"{m.group(1)} runs `{served}`")
            deps = gateway.get("depends_on") or {}
            needed = {n for n, s in flotilla.items() if n != "gateway"}
            report(set(deps) >= needed and all(d.get("condition") == "service_healthy" for d in deps.values()),
                   "compose gateway: waits for every service to be healthy", ", ".join(sorted(deps)))

    # The other health checks.
    nats = services.get("nats")
    if nats:
        cmd = " ".join(nats.get("command", []))
        http_port = re.search(r"(?:--http_port|-m)\s+(\d+)", cmd)
        hc = " ".join((nats.get("healthcheck") or {}).get("test", []))
        hc_port = re.search(r"127\.0\.0\.1:(\d+)/healthz", hc)
        report(bool(http_port and hc_port and http_port.group(1) == hc_port.group(1)),
               "compose nats: health check asks the monitoring port", hc_port.group(1) if hc_port else hc)
        report("--jetstream" in cmd or "-js" in cmd.split(), "compose nats: JetStream enabled")
        report(any(":" in v and v.split(":")[1] in cmd for v in nats.get("volumes", [])),
               "compose nats: store directory is the volume")
    postgres = services.get("postgres")
    if postgres:
        hc = " ".join((postgres.get("healthcheck") or {}).get("test", []))
        report("pg_isready" in hc, "compose postgres: health check is pg_isready")
    redis = services.get("redis")
    if redis:
        hc = " ".join((redis.get("healthcheck") or {}).get("test", []))
        report("redis-cli" in hc and "ping" in hc, "compose redis: health check is redis-cli ping")

    # Prometheus targets.
    prom_cfg = compose.get("configs", {}).get("prometheus")
    if prom_cfg:
        prom = docs.get((DEPLOY / prom_cfg["file"]).resolve(), [{}])[0] or {}
        scraped = set()
        for job in prom.get("scrape_configs", []):
            for sd in job.get("dns_sd_configs", []):
                for name in sd.get("names", []):
                    scraped.add(name)
                    report(name in flotilla and sd.get("port") == ports.get(name) and sd.get("type") == "A",
                           f"prometheus job {job['job_name']}: A records of `{name}` on its port", str(sd.get("port")))
        report(scraped >= set(flotilla), "prometheus: every flotilla service is scraped",
               ", ".join(sorted(set(flotilla) - scraped)) or ", ".join(sorted(scraped)))
    return compose


# --------------------------------------------------------------------------
# Kubernetes


def check_k8s(docs: dict[Path, list], env_names: dict[str, set[str]], image_uid: str | None) -> list[tuple[Path, dict]]:
    kust_path = K8S / "kustomization.yaml"
    kust = (docs.get(kust_path) or [{}])[0]
    resources = []
    for res in kust.get("resources", []):
        path = K8S / res
        if report(path.is_file(), f"kustomization resource exists: {res}"):
            resources += [(path, d) for d in docs.get(path, [])]
    template = K8S / "secret.example.yaml"
    secret_docs = [(template, d) for d in docs.get(template, [])]
    report(bool(secret_docs) and str(template.name) not in kust.get("resources", []),
           "k8s Secret template exists and is not applied by kustomize")

    by_kind: dict[str, dict[str, dict]] = {}
    for _, doc in resources + secret_docs:
        by_kind.setdefault(doc.get("kind"), {})[doc["metadata"]["name"]] = doc

    namespace = kust.get("namespace")
    report(namespace in by_kind.get("Namespace", {}), f"k8s namespace `{namespace}` is created by the kustomization")
    for secret in by_kind.get("Secret", {}).values():
        report(secret["metadata"].get("namespace") == namespace, f"k8s Secret {secret['metadata']['name']}: in namespace {namespace}")
        unknown = sorted(k for k in secret.get("stringData", {}) if k not in env_names["serve"])
        report(not unknown, f"k8s Secret {secret['metadata']['name']}: keys are variables `flotilla serve` reads",
               ", ".join(unknown) or ", ".join(secret.get("stringData", {})))
    for cm in by_kind.get("ConfigMap", {}).values():
        keys = [k for k in cm.get("data", {}) if not k.endswith(".toml")]
        unknown = sorted(k for k in keys if k not in env_names["serve"])
        if keys:
            report(not unknown, f"k8s ConfigMap {cm['metadata']['name']}: keys are variables `flotilla serve` reads",
                   ", ".join(unknown) or f"{len(keys)} key(s)")

    images = {i["name"] for i in kust.get("images", [])}
    deployments = by_kind.get("Deployment", {})
    container_ports: dict[str, dict] = {}
    for name, dep in deployments.items():
        spec = dep["spec"]
        pod = spec["template"]
        labels = pod["metadata"].get("labels", {})
        selector = spec["selector"]["matchLabels"]
        report(selector.items() <= labels.items(), f"k8s Deployment {name}: selector matches its pod labels")
        psc = pod["spec"].get("securityContext", {})
        for c in pod["spec"]["containers"]:
            where = f"k8s Deployment {name}/{c['name']}"
            report(c["image"].split(":")[0] in images, f"{where}: image is set by kustomization images", c["image"])
            csc = c.get("securityContext", {})
            report(psc.get("runAsNonRoot") is True or csc.get("runAsNonRoot") is True, f"{where}: runAsNonRoot")
            uid = str(csc.get("runAsUser", psc.get("runAsUser")))
            report(image_uid is None or uid == image_uid, f"{where}: runs as the image's user", f"{uid} vs {image_uid}")
            report(csc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem")
            report(csc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation false")
            res = c.get("resources", {})
            report(bool(res.get("requests")) and bool(res.get("limits")), f"{where}: resource requests and limits")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            container_ports[name] = ports
            args = c.get("args") or c.get("command") or ["up"]
            subcommand = args[0]
            env_list = c.get("env", [])
            env = {e["name"]: e for e in env_list}
            names = set(env)
            for src in c.get("envFrom", []):
                ref = src.get("configMapRef") or src.get("secretRef")
                kind = "ConfigMap" if "configMapRef" in src else "Secret"
                target = by_kind.get(kind, {}).get(ref["name"])
                report(target is not None, f"{where}: envFrom {kind} {ref['name']} exists")
                if target:
                    names |= set((target.get("data") or {}) | (target.get("stringData") or {}))
            unknown = sorted(n for n in names if n.startswith("FLOTILLA_") and n not in env_names[subcommand])
            report(not unknown, f"{where}: variables are read by `flotilla {subcommand}`",
                   ", ".join(unknown) or f"{len(names)} variable(s)")
            for e in env_list:
                ref = (e.get("valueFrom") or {})
                for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    if key in ref:
                        target = by_kind.get(kind, {}).get(ref[key]["name"])
                        data = {} if target is None else (target.get("data") or {}) | (target.get("stringData") or {})
                        report(ref[key]["key"] in data, f"{where}: {e['name']} from {kind} {ref[key]['name']} key exists")
            port = int(env.get("FLOTILLA_PORT", {}).get("value", 0))
            report(port in ports.values(), f"{where}: FLOTILLA_PORT is a containerPort", str(port))
            for probe in ("readinessProbe", "livenessProbe"):
                report(probe in c, f"{where}: has a {probe}")
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe in c:
                    pport = c[probe].get("httpGet", c[probe].get("tcpSocket", {})).get("port")
                    resolved = ports.get(pport) if isinstance(pport, str) else pport
                    report(resolved in ports.values() and resolved == port,
                           f"{where}: {probe} port is the listening port", f"{pport} -> {resolved}")
            if subcommand == "serve" and args[1] != "gateway":
                report(c["readinessProbe"]["httpGet"]["path"] == "/health",
                       f"{where}: readiness asks /health (database check)")
            if "FLOTILLA_GATEWAY_CONFIG" in env:
                cfg = Path(env["FLOTILLA_GATEWAY_CONFIG"]["value"])
                mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
                volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
                hit = [m for m in mounts.values() if Path(m["mountPath"]) == cfg.parent and "subPath" not in m]
                cm_name = hit and volumes.get(hit[0]["name"], {}).get("configMap", {}).get("name")
                cm = by_kind.get("ConfigMap", {}).get(cm_name or "")
                report(bool(cm) and cfg.name in cm.get("data", {}),
                       f"{where}: FLOTILLA_GATEWAY_CONFIG is a key of a ConfigMap mounted as a directory",
                       f"{cfg} from {cm_name}")

    services = by_kind.get("Service", {})
    for name, svc in services.items():
        selector = svc["spec"].get("selector", {})
        matched = [d for d, dep in deployments.items()
                   if selector and selector.items() <= dep["spec"]["template"]["metadata"].get("labels", {}).items()]
        report(len(matched) == 1, f"k8s Service {name}: selector matches one Deployment", ", ".join(matched) or "none")
        for p in svc["spec"].get("ports", []):
            target = p.get("targetPort", p["port"])
            for d in matched:
                resolved = container_ports[d].get(target) if isinstance(target, str) else target
                report(resolved in container_ports[d].values(), f"k8s Service {name}: targetPort {target} is a containerPort of {d}")

    for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
        ref = hpa["spec"]["scaleTargetRef"]
        dep = deployments.get(ref["name"]) if ref["kind"] == "Deployment" else None
        report(dep is not None, f"k8s HPA {name}: targets Deployment {ref['name']}")
        if dep:
            report("replicas" not in dep["spec"], f"k8s HPA {name}: Deployment leaves replicas to the HPA")
            containers = dep["spec"]["template"]["spec"]["containers"]
            report(all(c.get("resources", {}).get("requests", {}).get("cpu") for c in containers),
                   f"k8s HPA {name}: target containers request CPU")

    # Services trust the caller the gateway forwards (x-user-* headers):
    # only the gateway's pods may reach them.
    policies = by_kind.get("NetworkPolicy", {})
    gateway_labels = deployments.get("gateway", {}).get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
    for name, dep in deployments.items():
        if name == "gateway":
            continue
        labels = dep["spec"]["template"]["metadata"].get("labels", {})
        covering = [p for p in policies.values()
                    if p["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
                    and "Ingress" in p["spec"].get("policyTypes", [])]
        report(bool(covering), f"k8s Deployment {name}: a NetworkPolicy restricts who reaches it")
        for policy in covering:
            peers = [peer for rule in policy["spec"].get("ingress", []) for peer in rule.get("from", [])]
            pods = [peer["podSelector"].get("matchLabels", {}) for peer in peers if "podSelector" in peer]
            report(bool(pods) and all(sel.items() <= gateway_labels.items() for sel in pods),
                   f"k8s NetworkPolicy {policy['metadata']['name']}: of the pods, only the gateway's are admitted",
                   str(pods))
    gateway_env = {e["name"] for c in deployments.get("gateway", {}).get("spec", {}).get("template", {})
                   .get("spec", {}).get("containers", []) for e in c.get("env", [])}
    report("FLOTILLA_PUBLIC_URL" in gateway_env,
           "k8s gateway: gets FLOTILLA_PUBLIC_URL (the issuer of the tokens it verifies)")

    for cm in by_kind.get("ConfigMap", {}).values():
        for key, text in (cm.get("data") or {}).items():
            if not key.endswith(".toml"):
                continue
            try:
                config = tomllib.loads(text)
            except tomllib.TOMLDecodeError:
                continue  # reported with the other TOML files
            for route in config.get("route", []):
                for upstream in route.get("upstreams", []):
                    url = upstream if isinstance(upstream, str) else upstream["url"]
                    m = re.match(r"http://([^:/.]+)[^:/]*:(\d+)", url)
                    svc = m and services.get(m.group(1))
                    headless = bool(svc) and svc["spec"].get("clusterIP") == "None"
                    port_ok = bool(svc) and any(p["port"] == int(m.group(2)) for p in svc["spec"]["ports"])
                    report(headless and port_ok,
                           f"k8s ConfigMap {cm['metadata']['name']} {route['prefix']}: upstream is a headless Service port", url)
                    if svc:
                        deps = [d for d, dep in deployments.items()
                                if svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()]
                        served = [(dep["spec"]["template"]["spec"]["containers"][0].get("args") or [None, None])[1]
                                  for d, dep in deployments.items() if d in deps]
                        report(served == [route.get("service")],
                               f"k8s ConfigMap {cm['metadata']['name']} {route['prefix']}: upstream pods run `{route.get('service')}`",
                               ", ".join(map(str, served)))
    return resources


# --------------------------------------------------------------------------
# The Dockerfile


def check_dockerfile(instructions: list[tuple[str, str]]) -> tuple[dict[str, str], set[str], str | None]:
    ignore_path = DEPLOY / "Dockerfile.dockerignore"
    patterns = [l.strip() for l in ignore_path.read_text().splitlines() if l.strip() and not l.startswith("#")] \
        if ignore_path.is_file() else []
    copied: list[str] = []
    for word, rest in instructions:
        if word == "COPY" and "--from" not in rest:
            *sources, _dest = rest.split()
            for src in sources:
                copied.append(src)
                report((ROOT / src).exists(), f"Dockerfile COPY {src}: exists in the build context")
                report(not dockerignore_excludes(patterns, src), f"Dockerfile COPY {src}: not excluded by Dockerfile.dockerignore")
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    missing = [m for m in workspace if not any(m == c or m.startswith(c.rstrip("/") + "/") for c in copied)]
    report(not missing, "Dockerfile copies every workspace member", ", ".join(missing) or f"{len(workspace)} member(s)")
    for excluded in ("target", ".git"):
        report(dockerignore_excludes(patterns, excluded), f"Dockerfile.dockerignore excludes {excluded}")
    final = [i for i in instructions if i[0] == "FROM"][-1][1]
    entry = [rest for word, rest in instructions if word == "ENTRYPOINT"]
    report(bool(entry) and json.loads(entry[-1]) == ["flotilla"], "Dockerfile ENTRYPOINT is flotilla")
    user = [rest for word, rest in instructions if word == "USER"]
    uid = user[-1].split(":")[0] if user else None
    report(bool(uid) and uid.isdigit() and uid != "0", "Dockerfile runs as a numeric non-root user", str(uid))
    exposed = {p.split("/")[0] for word, rest in instructions if word == "EXPOSE" for p in rest.split()}
    report(bool(exposed), "Dockerfile EXPOSEs the port", ", ".join(sorted(exposed)))
    env = dockerfile_env(instructions)
    report(env.get("FLOTILLA_PORT") in exposed, "Dockerfile FLOTILLA_PORT is the EXPOSEd port", str(env.get("FLOTILLA_PORT")))
    report(env.get("FLOTILLA_HOST") == "0.0.0.0", "Dockerfile listens on every interface (FLOTILLA_HOST)")
    report("slim" in final or "distroless" in final, "Dockerfile runtime stage is slim", final)
    return env, exposed, uid


# --------------------------------------------------------------------------
# The real binary


def check_gateway_configs(binary: Path, tomls: dict[Path, dict], logdir: Path) -> None:
    for path, config in tomls.items():
        label = re.sub(r"[^A-Za-z0-9]+", "-", rel(path))
        proc = Process(binary, ["serve", "gateway", "--port", "0", "--config", str(path)],
                       clean_env(FLOTILLA_LOG_FORMAT="json"), logdir, f"gateway-{label}")
        try:
            port = proc.wait_listening(15)
            if not report(port is not None, f"binary loads {rel(path)}", f"port {port}" if port else proc.stderr_path.read_text().strip()[-300:]):
                continue
            time.sleep(1.5)
            report(proc.running(), f"binary keeps running with {rel(path)}")
            expected = {r.get("service") for r in config.get("route", [])}
            status, body = http("GET", f"http://127.0.0.1:{port}/_flotilla/api/services")
            served = set(json.loads(body).get("services", {})) if status == 200 else set()
            report(served == expected, f"binary serves the routes of {rel(path)}", ", ".join(sorted(served)))
            status, _ = http("GET", f"http://127.0.0.1:{port}/metrics")
            report(status == 200, f"binary answers /metrics with {rel(path)}", str(status))
        finally:
            code = proc.stop()
        report(code == 0, f"binary stops cleanly on SIGTERM with {rel(path)}", f"exit {code}")
        records = proc.log_records()
        errors = [r for r in records if r.get("level") in ("ERROR", "RAW")]
        report(not errors, f"binary logs no error with {rel(path)}", "; ".join(r.get("message", "") for r in errors)[:300])
        hosts = {re.match(r"http://([^/]+)", u if isinstance(u, str) else u["url"]).group(1)
                 for r in config.get("route", []) for u in r.get("upstreams", [])}
        for host in sorted(hosts):
            name = host.rsplit(":", 1)[0]
            try:
                socket.getaddrinfo(name, None)
                report(True, f"binary resolves {host} ({rel(path)})", "resolves on this machine")
            except socket.gaierror:
                warned = [r for r in records if r.get("level") == "WARN" and r.get("name") == host]
                report(bool(warned), f"binary only warns that {host} does not resolve here ({rel(path)})",
                       warned[0].get("message") if warned else "no warning logged")

    bad = logdir / "broken.toml"
    bad.write_text('[gateway]\naccess_log = true\n[[route]]\nprefix = "users"\nupstreams = ["http://users:8080"]\n')
    out = subprocess.run([str(binary), "serve", "gateway", "--port", "0", "--config", str(bad)],
                         capture_output=True, text=True, env=clean_env(), timeout=30)
    report(out.returncode != 0 and "invalid gateway configuration" in out.stderr,
           "binary rejects a broken gateway configuration (control)", f"exit {out.returncode}")


def check_services(served: set[str], compose: dict, resources: list[tuple[Path, dict]],
                   gateway_configs: dict[Path, dict]) -> None:
    """Every service the binary runs is deployed and routed everywhere, and nothing else is."""
    report(bool(served), "binary: `serve --help` lists the services", ", ".join(sorted(served)))

    def same(where: str, found: set[str]) -> None:
        missing, unknown = sorted(served - found), sorted(found - served)
        detail = "; ".join(part for part in (missing and "missing " + ", ".join(missing),
                                             unknown and "unknown " + ", ".join(unknown)) if part)
        report(not detail, f"{where}: every service the binary runs, and only those",
               detail or ", ".join(sorted(found)))

    same("compose.yaml", set(compose_services(compose).values()))
    deployed = {(c.get("args") or [None, None])[1] for _, doc in resources if doc.get("kind") == "Deployment"
                for c in doc["spec"]["template"]["spec"]["containers"]}
    same("k8s Deployments", deployed - {"gateway"})
    for path, config in gateway_configs.items():
        same(f"routes of {rel(path)}", {r.get("service") for r in config.get("route", [])})


def check_healthcheck_command(binary: Path, compose: dict, logdir: Path) -> None:
    # Every flotilla service has the same health check: try it on the first.
    first = next(iter(compose_services(compose).items()), ("users", "users"))
    svc = (compose.get("services") or {}).get(first[0]) or {}
    cmd = healthcheck_command(svc.get("healthcheck") or {})
    if not report(cmd is not None, "compose health check is a bash command"):
        return
    if not shutil.which("bash"):
        report(None, "compose health check runs", "no bash here")
        return

    def run(port: int) -> int:
        return subprocess.run(["bash", "-c", cmd], env=clean_env(FLOTILLA_PORT=str(port)),
                              capture_output=True, timeout=10).returncode

    data = logdir / f"{first[1]}-data"
    service = Process(binary, ["serve", first[1], "--port", "0", "--data", str(data)],
                      clean_env(FLOTILLA_LOG_FORMAT="json"), logdir, first[1])
    gateway = Process(binary, ["serve", "gateway", "--port", "0", "--upstream", f"{first[1]}=http://127.0.0.1:9"],
                      clean_env(FLOTILLA_LOG_FORMAT="json"), logdir, "gateway-unhealthy")
    try:
        port = service.wait_listening(30)
        if report(port is not None, f"serve {first[1]} starts (SQLite) for the health check test"):
            ok = False
            for _ in range(20):
                if run(port) == 0:
                    ok = True
                    break
                time.sleep(0.5)
            report(ok, "compose health check passes on a healthy service (200)")
        gport = gateway.wait_listening(15)
        if report(gport is not None, "serve gateway starts with an instance that does not answer"):
            status, _ = http("GET", f"http://127.0.0.1:{gport}/health")
            rc = run(gport)
            report(status == 503 and rc != 0, "compose health check fails on a 503", f"HTTP {status}, exit {rc}")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        report(run(closed) != 0, "compose health check fails on a closed port")
    finally:
        service.stop()
        gateway.stop()


# --------------------------------------------------------------------------
# Optional validators


def check_external(resources: list[tuple[Path, dict]], logdir: Path) -> None:
    if shutil.which("check-jsonschema"):
        out = subprocess.run(["check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml")],
                             capture_output=True, text=True)
        report(out.returncode == 0, "compose.yaml validates against the Compose specification (check-jsonschema)",
               (out.stdout + out.stderr).strip().splitlines()[-1] if out.returncode else "")
    else:
        report(None, "compose.yaml against the Compose specification", "pip install check-jsonschema")

    rendered = None
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True)
        if report(out.returncode == 0, "kubectl kustomize deploy/k8s renders", out.stderr.strip()[-300:]):
            rendered = list(yaml.safe_load_all(out.stdout))
            report(all(d["metadata"].get("namespace") == "flotilla" for d in rendered if d["kind"] != "Namespace"),
                   "rendered resources are in namespace flotilla", f"{len(rendered)} resource(s)")
    else:
        report(None, "kubectl kustomize deploy/k8s", "kubectl not installed")
    try:
        import kubernetes_validate
    except ImportError:
        report(None, "Kubernetes schemas", "pip install kubernetes-validate")
        return
    docs = rendered if rendered is not None else [d for _, d in resources]
    docs = docs + [d for d in yaml.safe_load_all((K8S / "secret.example.yaml").read_text()) if d]
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
            report(True, f"k8s {name} validates (kubernetes-validate, strict)")
        except Exception as err:  # noqa: BLE001 - the library raises several kinds
            report(False, f"k8s {name} validates (kubernetes-validate, strict)", str(err)[:300])


# --------------------------------------------------------------------------
# --smoke: the Compose topology as local processes


def nats_request(url: str, subject: str, payload: bytes = b"") -> dict:
    m = re.match(r"nats://(?:[^@/]*@)?([^:/]+)(?::(\d+))?", url)
    with socket.create_connection((m.group(1), int(m.group(2) or 4222)), timeout=5) as sock:
        buf = b""

        def line() -> bytes:
            nonlocal buf
            while b"\r\n" not in buf:
                buf += sock.recv(65536)
            out, buf = buf.split(b"\r\n", 1)
            return out

        line()  # INFO
        sock.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.deploycheck 1\r\n')
        sock.sendall(b"PUB %s _INBOX.deploycheck %d\r\n%s\r\n" % (subject.encode(), len(payload), payload))
        while True:
            got = line()
            if got.startswith(b"PING"):
                sock.sendall(b"PONG\r\n")
            elif got.startswith(b"MSG"):
                size = int(got.split()[-1])
                while len(buf) < size + 2:
                    buf += sock.recv(65536)
                return json.loads(buf[:size] or b"{}")


def redis_commands(url: str, *commands: list[str]) -> list:
    """Runs each command on one connection to the Redis server at `url` (RESP2, no TLS)."""
    u = urllib.parse.urlsplit(url)
    with socket.create_connection((u.hostname, u.port or 6379), timeout=5) as sock:
        reader = sock.makefile("rb")

        def read():
            line = reader.readline().rstrip(b"\r\n")
            kind, rest = line[:1], line[1:]
            if kind == b"+":
                return rest.decode()
            if kind == b"-":
                raise OSError(f"Redis: {rest.decode()}")
            if kind == b":":
                return int(rest)
            if kind == b"$":
                return None if int(rest) < 0 else reader.read(int(rest) + 2)[:-2].decode(errors="replace")
            if kind == b"*":
                return None if int(rest) < 0 else [read() for _ in range(int(rest))]
            raise OSError(f"unexpected Redis reply {line[:60]!r}")

        def send(*args: str):
            words = [a.encode() for a in args]
            sock.sendall(b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words))
            return read()

        if u.password:
            send("AUTH", *([urllib.parse.unquote(u.username)] if u.username else []), urllib.parse.unquote(u.password))
        if u.path.strip("/"):
            send("SELECT", u.path.strip("/"))
        return [send(*c) for c in commands]


def redis_delete_prefix(url: str, prefix: str) -> int:
    cursor, deleted = "0", 0
    while True:
        [(cursor, keys)] = redis_commands(url, ["SCAN", cursor, "MATCH", f"{prefix}*", "COUNT", "1000"])
        if keys:
            deleted += redis_commands(url, ["DEL", *keys])[0]
        if cursor == "0":
            return deleted


class WebSocket:
    """Just enough of a websocket client to read the text frames a server pushes."""

    def __init__(self, url: str, timeout: float = 5):
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.reader = self.sock.makefile("rb")
        status = self.reader.readline().split()
        self.status = int(status[1]) if len(status) > 1 else 0
        while self.reader.readline() not in (b"\r\n", b""):
            pass

    def text(self, timeout: float) -> str | None:
        """The next text frame within `timeout` seconds; None on close or timeout."""
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                head = self.reader.read(2)
                if len(head) < 2:
                    return None
                size = head[1] & 0x7F
                if size >= 126:
                    size = int.from_bytes(self.reader.read(2 if size == 126 else 8), "big")
                mask = self.reader.read(4) if head[1] & 0x80 else b""
                payload = self.reader.read(size)
                if mask:
                    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                opcode = head[0] & 0x0F
                if opcode == 0x1:
                    return payload.decode()
                if opcode == 0x8:
                    return None
        except OSError:
            return None
        return None

    def close(self) -> None:
        try:
            self.sock.sendall(b"\x88\x80" + secrets.token_bytes(4))  # close, masked, no payload
        except OSError:
            pass
        self.sock.close()


def smoke(binary: Path, compose: dict, logdir: Path) -> None:
    pg = os.environ.get("FLOTILLA_TEST_POSTGRES_URL")
    nats = os.environ.get("FLOTILLA_TEST_NATS_URL")
    redis = os.environ.get("FLOTILLA_TEST_REDIS_URL")
    services = compose["services"]
    image = services["gateway"]["image"]
    uses_redis = any("FLOTILLA_REDIS" in env_map(s.get("environment")) for s in services.values() if s.get("image") == image)
    if not (pg and nats and (redis or not uses_redis)):
        report(None, "smoke", "set FLOTILLA_TEST_POSTGRES_URL, FLOTILLA_TEST_NATS_URL"
               + (" and FLOTILLA_TEST_REDIS_URL" if uses_redis else ""))
        return
    tag = secrets.token_hex(4)
    prefix, namespace = f"deploycheck{tag}_", f"deploycheck{tag}"
    redis_prefix = f"deploycheck{tag}:kv:"
    cmd = healthcheck_command(services["gateway"]["healthcheck"])

    def healthy(port: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if subprocess.run(["bash", "-c", cmd], env=clean_env(FLOTILLA_PORT=str(port)),
                              capture_output=True, timeout=10).returncode == 0:
                return True
            time.sleep(0.5)
        return False

    procs: list[Process] = []
    instances: dict[str, list[int]] = {}
    try:
        # Every replica of every service at once, as Compose starts them.
        starting = []
        for name, svc in services.items():
            if svc.get("image") != image or name == "gateway":
                continue
            env = {k: v for k, v in env_map(svc.get("environment")).items() if v is not None}
            env.update(FLOTILLA_DB=pg, FLOTILLA_BUS=nats, FLOTILLA_HOST="127.0.0.1", FLOTILLA_PORT="0",
                       FLOTILLA_DB_SCHEMA_PREFIX=prefix, FLOTILLA_BUS_NAMESPACE=namespace)
            if "FLOTILLA_REDIS" in env:
                env.update(FLOTILLA_REDIS=redis, FLOTILLA_KV_REDIS_PREFIX=redis_prefix)
            for i in range((svc.get("deploy") or {}).get("replicas", 1)):
                p = Process(binary, svc["command"], clean_env(**env), logdir, f"smoke-{name}-{i + 1}")
                procs.append(p)
                starting.append((name, p))
        first_try = []
        for name, p in starting:
            port = p.wait_listening(60)
            if port is None and not p.running():
                # Compose's `restart: unless-stopped` starts an exited replica
                # again; do the same, once, and report the first failure.
                lines = p.stderr_path.read_text().strip().splitlines() or [f"exit {p.proc.returncode}"]
                cause = next((l for l in reversed(lines) if l.startswith("error:")), lines[-1])
                first_try.append(f"{p.label}: {cause[:200]}")
                retry = Process(binary, p.proc.args[1:], p.proc_env, logdir, f"{p.label}-restarted")
                procs.append(retry)
                p, port = retry, retry.wait_listening(60)
            if report(port is not None and healthy(port, 60), f"smoke {p.label}: starts and turns healthy",
                      f"port {port}" if port else p.stderr_path.read_text().strip()[-300:]):
                instances.setdefault(name, []).append(port)
        report(not first_try, "smoke: replicas started at once all come up without a restart", "; ".join(first_try))
        if len(starting) != sum(len(v) for v in instances.values()):
            return
        # The gateway, on deploy/gateway.toml with each name replaced by its replicas.
        text = (DEPLOY / "gateway.toml").read_text()
        for name, ports in instances.items():
            text = text.replace(f'"http://{name}:8080"', ", ".join(f'"http://127.0.0.1:{p}"' for p in ports))
        config = logdir / "smoke-gateway.toml"
        config.write_text(text)
        gw = Process(binary, ["serve", "gateway", "--port", "0", "--config", str(config)],
                     clean_env(FLOTILLA_LOG_FORMAT="json"), logdir, "smoke-gateway")
        procs.append(gw)
        port = gw.wait_listening(15)
        if not report(port is not None and healthy(port, 30), "smoke gateway: starts and turns healthy"):
            return
        base = f"http://127.0.0.1:{port}"
        status, body = http("GET", f"{base}/health")
        health = json.loads(body)
        counts = {s: len(v.get("instances", [])) for s, v in health.get("services", {}).items()}
        report(status == 200 and counts == {n: len(p) for n, p in instances.items()},
               "smoke gateway: /health passes with every replica", json.dumps(counts))
        status, body = http("POST", f"{base}/users", {"name": "deploy check", "email": f"check-{tag}@example.com"})
        user = json.loads(body) if status == 201 else {}
        report(status == 201, "smoke: POST /users through the gateway", str(status))
        status, _ = http("GET", f"{base}/api/v1/users/{user.get('id')}")
        report(status == 200, "smoke: GET /api/v1/users/{id} through the gateway", str(status))
        found = None
        deadline = time.monotonic() + 30
        while user and time.monotonic() < deadline and not found:
            status, body = http("GET", f"{base}/notifications/messages?limit=100")
            if status == 200:
                found = next((m for m in json.loads(body).get("items", []) if user["id"] in m.get("message", "")), None)
            time.sleep(0.5)
        report(found is not None, "smoke: user.created reaches notifications over NATS",
               f"status {found['status']}" if found else "no message within 30 s")
        if "kv" in instances:
            feed = WebSocket(f"{base}/kv/ws")
            try:
                if report(feed.status == 101, "smoke: GET /kv/ws upgrades to a websocket through the gateway",
                          f"HTTP {feed.status}"):
                    key = f"deploycheck-{tag}"
                    status, body = http("POST", f"{base}/kv/roundtrip", {"key": key, "value": "hello"})
                    accepted = json.loads(body) if status == 202 else {}
                    report(status == 202, "smoke: POST /kv/roundtrip through the gateway", str(status))
                    pushed = None
                    deadline = time.monotonic() + 30
                    while accepted and not pushed and (left := deadline - time.monotonic()) > 0:
                        frame = feed.text(left)
                        if frame is None:
                            break
                        if json.loads(frame).get("correlation_id") == accepted["correlation_id"]:
                            pushed = frame
                    report(pushed is not None, "smoke: the stored pair is pushed on /kv/ws",
                           "" if pushed else "no frame within 30 s")
                    status, body = http("GET", f"{base}/api/v1/kv/pairs/{key}")
                    report(status == 200 and json.loads(body).get("value") == "hello",
                           "smoke: GET /api/v1/kv/pairs/{key} through the gateway", str(status))
                    if uses_redis:
                        [exists] = redis_commands(redis, ["EXISTS", f"{redis_prefix}pair:{key}"])
                        report(exists == 1, "smoke: the pair lives in Redis (FLOTILLA_REDIS)", f"{redis_prefix}pair:{key}")
            finally:
                feed.close()
            status, body = http("POST", f"{base}/kv/batch", {"size": 10}, timeout=15)
            batch = json.loads(body) if status == 200 else {}
            report(status == 200 and batch.get("size") == 10, "smoke: POST /kv/batch stores the batch whole",
                   f"{status} {batch.get('status', '')}".strip())
    finally:
        # Replicas that exited at start were reported above; the rest must
        # stop cleanly and log no error.
        alive = [p for p in procs if p.running()]
        exited = {p.label for p in procs if not p.running()}
        codes = [(p.label, p.stop()) for p in procs]
        report(all(c == 0 for l, c in codes if l not in exited), "smoke: every running process stops cleanly on SIGTERM",
               ", ".join(f"{l} exit {c}" for l, c in codes if c != 0 and l not in exited))
        errors = [(p.label, r.get("message")) for p in alive for r in p.log_records() if r.get("level") in ("ERROR", "RAW")]
        report(not errors, "smoke: no error logged by the running processes", "; ".join(f"{l}: {m}" for l, m in errors)[:400])
        cleanup = []
        if shutil.which("psql"):
            schemas = sorted(set(compose_services(compose).values()))
            drop = "".join(f'DROP SCHEMA IF EXISTS "{prefix}{s}" CASCADE;' for s in schemas)
            out = subprocess.run(["psql", pg, "-qc", drop], capture_output=True, text=True)
            cleanup.append("schemas dropped" if out.returncode == 0 else f"schemas: {out.stderr.strip()}")
        else:
            cleanup.append(f"psql not found: drop schemas {prefix}* by hand")
        try:
            nats_request(nats, f"$JS.API.STREAM.DELETE.{namespace.upper()}")
            cleanup.append("stream deleted")
        except OSError as err:
            cleanup.append(f"stream {namespace.upper()}: {err}")
        if uses_redis:
            try:
                cleanup.append(f"{redis_delete_prefix(redis, redis_prefix)} Redis key(s) deleted")
            except OSError as err:
                cleanup.append(f"Redis keys {redis_prefix}*: {err}")
        print(f"     smoke cleanup: {', '.join(cleanup)}")


# --------------------------------------------------------------------------


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    unknown = flags - {"--smoke"}
    if unknown or len(args) > 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    binary = Path(args[0]) if args else ROOT / "target" / "debug" / "flotilla"
    if not binary.is_absolute():
        binary = (Path.cwd() / binary) if (Path.cwd() / binary).exists() else ROOT / binary
    if not report(binary.is_file() and os.access(binary, os.X_OK), f"binary: {rel(binary)}"):
        return 1
    env_names = {
        "up": help_env_names(binary, "up"),
        "serve": help_env_names(binary, "serve"),
    }
    report(bool(env_names["up"] and env_names["serve"]), "binary --help lists its variables",
           f"up: {len(env_names['up'])}, serve: {len(env_names['serve'])}")

    docs = load_yaml_files()
    tomls = load_toml_files()
    instructions = parse_dockerfile(DEPLOY / "Dockerfile")
    image_env, exposed, uid = check_dockerfile(instructions)
    unknown = sorted(k for k in image_env if k.startswith("FLOTILLA_") and k not in env_names["up"] | env_names["serve"])
    report(not unknown, "Dockerfile variables are read by the binary", ", ".join(unknown) or ", ".join(sorted(image_env)))

    compose = check_compose(docs, env_names, image_env, exposed, tomls)
    resources = check_k8s(docs, env_names, uid)

    with tempfile.TemporaryDirectory(prefix="flotilla-deploy-check-") as tmp:
        logdir = Path(tmp)
        gateway_configs = dict(tomls)
        for _, doc in resources:
            if doc.get("kind") == "ConfigMap":
                for key, text in (doc.get("data") or {}).items():
                    if key.endswith(".toml"):
                        path = logdir / f"configmap-{doc['metadata']['name']}-{key}"
                        path.write_text(text)
                        DISPLAY[path] = f"ConfigMap {doc['metadata']['name']} {key}"
                        try:
                            gateway_configs[path] = tomllib.loads(text)
                            report(True, f"toml parses: {rel(path)}")
                        except tomllib.TOMLDecodeError as err:
                            report(False, f"toml parses: {rel(path)}", str(err))
                            gateway_configs[path] = {}
        check_services(served_services(binary), compose, resources, gateway_configs)
        check_gateway_configs(binary, gateway_configs, logdir)
        check_healthcheck_command(binary, compose, logdir)
        check_external(resources, logdir)
        if "--smoke" in flags:
            smoke(binary, compose, logdir)

    print(f"checks: {results['ok']} passed, {results['fail']} failed, {results['skip']} skipped")
    return 1 if results["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
