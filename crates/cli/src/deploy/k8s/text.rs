//! The fixed parts of the Kubernetes manifests, the same for every service.

pub(super) const NAMESPACE: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: flotilla
  labels:
    app.kubernetes.io/part-of: flotilla
";

/// `config.yaml` up to the routes.
pub(super) const CONFIG: &str = "# Settings shared by the services, and the gateway's routes.
apiVersion: v1
kind: ConfigMap
metadata:
  name: flotilla-env
  labels:
    app.kubernetes.io/part-of: flotilla
data:
  # NATS with JetStream enabled, expected to exist (for example the NATS Helm
  # chart installed as `nats` in the namespace `nats`). If the URL carries
  # credentials, move it to the Secret.
  FLOTILLA_BUS: nats://nats.nats.svc.cluster.local:4222
  FLOTILLA_BUS_NAMESPACE: flotilla
  FLOTILLA_LOG_FORMAT: json
  # Where browsers reach the gateway: the OpenID issuer and redirect URIs
  # are built on it, and the gateway checks the issuer of every access
  # token against it. Set it to your Ingress's address.
  FLOTILLA_PUBLIC_URL: https://flotilla.example.com
---
# The gateway's routes. Each upstream is a headless Service: its name resolves
# to the address of every ready pod, and the gateway balances over all of them,
# resolving it again every dns_refresh_ms. The short names resolve in the
# namespace the gateway runs in.
#
# Mounted as a directory (not with subPath), so that an edited ConfigMap
# reaches the running gateway, which watches the file and reloads it without
# dropping connections.
apiVersion: v1
kind: ConfigMap
metadata:
  name: flotilla-gateway
  labels:
    app.kubernetes.io/part-of: flotilla
    app.kubernetes.io/component: gateway
data:
  gateway.toml: |
";

/// The gateway's container, from its environment to its lifecycle.
pub(super) const GATEWAY_CONTAINER: &str = r#"          env:
            - name: FLOTILLA_HOST
              value: 0.0.0.0
            - name: FLOTILLA_PORT
              value: "8080"
            - name: FLOTILLA_GATEWAY_CONFIG
              value: /etc/flotilla/gateway.toml
            - name: FLOTILLA_LOG_FORMAT
              valueFrom:
                configMapKeyRef:
                  name: flotilla-env
                  key: FLOTILLA_LOG_FORMAT
            # The issuer of the access tokens the gateway verifies.
            - name: FLOTILLA_PUBLIC_URL
              valueFrom:
                configMapKeyRef:
                  name: flotilla-env
                  key: FLOTILLA_PUBLIC_URL
          ports:
            - name: http
              containerPort: 8080
          # The gateway's own /health aggregates every service and fails while
          # any one of them is down; probing it would take the whole edge out
          # of rotation (or restart it) for one service's outage. The probes
          # ask /metrics, which the gateway answers itself.
          readinessProbe:
            httpGet:
              path: /metrics
              port: http
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 2
          livenessProbe:
            httpGet:
              path: /metrics
              port: http
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
          lifecycle:
            # Let kube-proxy stop sending new connections before the gateway
            # stops accepting them.
            preStop:
              exec:
                command: ["sleep", "5"]
"#;

/// The gateway's routes, mounted as a directory.
pub(super) const GATEWAY_VOLUMES: &str = "          volumeMounts:
            - name: config
              mountPath: /etc/flotilla
              readOnly: true
      volumes:
        - name: config
          configMap:
            name: flotilla-gateway
";

/// A service container's environment, up to its own settings.
pub(super) const SERVICE_ENV: &str = r#"          envFrom:
            - configMapRef:
                name: flotilla-env
          env:
            - name: FLOTILLA_HOST
              value: 0.0.0.0
            - name: FLOTILLA_PORT
              value: "8080"
            - name: FLOTILLA_DB
              valueFrom:
                secretKeyRef:
                  name: flotilla
                  key: FLOTILLA_DB
"#;

/// A service container's port, probes and lifecycle.
pub(super) const SERVICE_PROBES: &str = r#"          ports:
            - name: http
              containerPort: 8080
          # The service connects to PostgreSQL and NATS and runs its
          # migrations before it answers; give that up to a minute.
          startupProbe:
            httpGet:
              path: /metrics
              port: http
            periodSeconds: 2
            timeoutSeconds: 2
            failureThreshold: 30
          # /health checks the database: a pod whose database does not answer
          # leaves the headless Service's DNS answer, so the gateway stops
          # sending it requests (a bus outage is only a warning: events wait
          # in each service's outbox).
          readinessProbe:
            httpGet:
              path: /health
              port: http
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 2
          # Liveness does not depend on the database (a PostgreSQL outage must
          # not restart every pod): /metrics shows that the process answers.
          livenessProbe:
            httpGet:
              path: /metrics
              port: http
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
          lifecycle:
            preStop:
              exec:
                command: ["sleep", "5"]
"#;

/// Every container's resources and security context.
pub(super) const CONTAINER_LIMITS: &str = r#"          resources:
            requests:
              cpu: 100m
              memory: 64Mi
            limits:
              cpu: "1"
              memory: 256Mi
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
"#;

pub(super) const KUSTOMIZATION: &str = "# kubectl apply -k deploy/k8s
#
# Expected to exist already: PostgreSQL and NATS with JetStream (see
# deploy/README.md), and the Secret `flotilla` in the namespace (see
# secret.example.yaml, deliberately not listed below).
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization

namespace: flotilla

labels:
  - pairs:
      app.kubernetes.io/part-of: flotilla

resources:
  - namespace.yaml
  - config.yaml
  - gateway.yaml
";

pub(super) const KUSTOMIZATION_IMAGES: &str = "
# Where the image comes from; set yours with
#   cd deploy/k8s && kustomize edit set image flotilla=registry.example.com/flotilla:0.1.0
images:
  - name: flotilla
    newName: flotilla
    newTag: 0.1.0
";
