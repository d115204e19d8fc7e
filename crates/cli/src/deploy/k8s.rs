//! The Kubernetes target: the manifests under `k8s/`, tied together by
//! `k8s/kustomization.yaml`.

mod text;

use text::{
    CONFIG, CONTAINER_LIMITS, GATEWAY_CONTAINER, GATEWAY_VOLUMES, KUSTOMIZATION,
    KUSTOMIZATION_IMAGES, NAMESPACE, SERVICE_ENV, SERVICE_PROBES,
};

use super::{File, comment, gateway_config, secrets};
use crate::registry::Entry;

/// The most pods an HorizontalPodAutoscaler scales a service to (unless
/// the service asks for more replicas than that to begin with).
const MAX_REPLICAS: u16 = 10;

/// Every manifest; `secret.example.yaml` stays hand-written.
pub(super) fn files(services: &[Entry]) -> Vec<File> {
    let mut files = vec![
        File::new("k8s/namespace.yaml", NAMESPACE.to_owned()),
        File::new("k8s/config.yaml", config(services)),
        File::new("k8s/gateway.yaml", gateway()),
    ];
    for entry in services {
        files.push(File::new(
            format!("k8s/{}.yaml", entry.name),
            service(entry),
        ));
        files.push(File::new(
            format!("k8s/{}-hpa.yaml", entry.name),
            hpa(entry),
        ));
    }
    files.push(File::new("k8s/kustomization.yaml", kustomization(services)));
    files
}

/// The ConfigMap of shared settings, and the gateway's routes.
fn config(services: &[Entry]) -> String {
    let mut out = String::from(CONFIG);
    let routes = gateway_config(services, |name| format!("http://{name}-headless:8080"));
    for line in routes.lines() {
        match line {
            "" => out.push('\n'),
            line => out.push_str(&format!("    {line}\n")),
        }
    }
    out
}

/// The gateway's Deployment and its ClusterIP Service.
fn gateway() -> String {
    format!(
        "{}{GATEWAY_CONTAINER}{CONTAINER_LIMITS}{GATEWAY_VOLUMES}---\n{}",
        deployment("gateway", "  replicas: 2\n"),
        service_object("gateway", "gateway", "type: ClusterIP"),
    )
}

/// A service's Deployment, without replicas (its HPA owns the count), and
/// the headless Service through which the gateway finds its pods.
fn service(entry: &Entry) -> String {
    let name = entry.name;
    let replicas = comment(
        2,
        &format!(
            "No replicas here: the HorizontalPodAutoscaler in {name}-hpa.yaml owns the \
             count (at least {}), and a fixed number would reset it on every apply.",
            entry.deploy.replicas
        ),
    );
    format!(
        "{about}{deployment}{SERVICE_ENV}{env}{SERVICE_PROBES}{CONTAINER_LIMITS}---\n\
         # Headless: the name resolves to the address of every ready pod, which is how\n\
         # the gateway finds the instances (see the flotilla-gateway ConfigMap).\n{object}\
         ---\n{policy}",
        about = comment(0, &format!("{name}: {}.", entry.about)),
        deployment = deployment(name, &replicas),
        env = service_env(entry),
        object = service_object(&format!("{name}-headless"), name, "clusterIP: None"),
        policy = network_policy(name),
    )
}

/// Only the gateway's pods, and Prometheus from a namespace labelled
/// `flotilla.dev/scrape: "true"`, reach a service: it trusts the caller the
/// gateway forwards in `x-user-*` headers.
fn network_policy(name: &str) -> String {
    let why = comment(
        0,
        &format!(
            "Only the gateway reaches {name} (and Prometheus, from a namespace labelled \
             flotilla.dev/scrape=true): the service trusts the caller that the gateway \
             verified and forwards in x-user-* headers. Needs a network plugin that \
             enforces NetworkPolicy."
        ),
    );
    format!(
        r#"{why}apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {name}
  labels:
    app.kubernetes.io/name: flotilla
    app.kubernetes.io/component: {name}
spec:
  podSelector:
    matchLabels:
      app.kubernetes.io/name: flotilla
      app.kubernetes.io/component: {name}
  policyTypes: [Ingress]
  ingress:
    - from:
        - podSelector:
            matchLabels:
              app.kubernetes.io/name: flotilla
              app.kubernetes.io/component: gateway
        - namespaceSelector:
            matchLabels:
              flotilla.dev/scrape: "true"
      ports:
        - port: http
"#
    )
}

/// What a service reads beyond the database: its secrets, from the Secret
/// `flotilla` where they may be left out, and a word on Redis.
fn service_env(entry: &Entry) -> String {
    let mut out = String::new();
    for secret in secrets(entry) {
        let text = format!(
            "{} A secret, optional: the Secret may leave it out.",
            secret.about
        );
        out.push_str(&format!(
            "{}            - name: {var}
              valueFrom:
                secretKeyRef:
                  name: flotilla
                  key: {var}
                  optional: true
",
            comment(12, &text),
            var = secret.var,
        ));
    }
    if entry.deploy.redis {
        let text = format!(
            "{} can keep data in Redis, which these manifests do not run: without it, \
             that data stays in its schema of that database. To use Redis, set \
             FLOTILLA_REDIS in this container (a redis:// URL; from the Secret if it \
             carries a password), with a kustomize patch for example.",
            entry.name
        );
        out.push_str(&comment(12, &text));
    }
    out
}

/// A service's HorizontalPodAutoscaler: from its replicas up, on CPU.
fn hpa(entry: &Entry) -> String {
    let name = entry.name;
    let min = entry.deploy.replicas;
    let max = MAX_REPLICAS.max(min);
    let text = format!(
        "Scales {name} on CPU (needs the metrics server), from {min} to {max} pods; the \
         gateway finds new pods through the headless Service."
    );
    format!(
        r#"{}apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {name}
  labels:
    app.kubernetes.io/name: flotilla
    app.kubernetes.io/component: {name}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {name}
  minReplicas: {min}
  maxReplicas: {max}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: 70
"#,
        comment(0, &text),
    )
}

/// `kustomization.yaml`: every manifest but the Secret template.
fn kustomization(services: &[Entry]) -> String {
    let mut out = String::from(KUSTOMIZATION);
    for entry in services {
        out.push_str(&format!("  - {0}.yaml\n  - {0}-hpa.yaml\n", entry.name));
    }
    out.push_str(KUSTOMIZATION_IMAGES);
    out
}

/// A Deployment of `component` up to its container's `args`; `spec` goes
/// under `spec:`, before the selector.
fn deployment(component: &str, spec: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {component}
  labels:
    app.kubernetes.io/name: flotilla
    app.kubernetes.io/component: {component}
spec:
{spec}  selector:
    matchLabels:
      app.kubernetes.io/name: flotilla
      app.kubernetes.io/component: {component}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: flotilla
        app.kubernetes.io/component: {component}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "8080"
        prometheus.io/path: /metrics
    spec:
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: {component}
          image: flotilla
          args: ["serve", "{component}"]
"#
    )
}

/// A Service named `name` in front of the pods of `component`; `kind` is
/// its `type:` or `clusterIP:` line.
fn service_object(name: &str, component: &str, kind: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: {name}
  labels:
    app.kubernetes.io/name: flotilla
    app.kubernetes.io/component: {component}
spec:
  {kind}
  selector:
    app.kubernetes.io/name: flotilla
    app.kubernetes.io/component: {component}
  ports:
    - name: http
      port: 8080
      targetPort: http
"#
    )
}
