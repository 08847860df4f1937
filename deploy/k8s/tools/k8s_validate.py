#!/usr/bin/env python3
"""Render and validate the CRM Kubernetes manifests.

  k8s_validate.py [--root DIR] [--kubectl KUBECTL] [--dockerfile FILE] ENV...
      Render each environment of tools/expectations.yaml (base, dev, prod) and check it.
      With --kubectl, also render with `KUBECTL kustomize` and require identical output.
  k8s_validate.py --render DIR
      Print the built-in renderer's output for a kustomization directory.
  k8s_validate.py --self-test [--kubectl KUBECTL]
      Prove the renderer and the checks work: known-good manifests must pass, and each
      deliberately broken variant must fail.

Exit status: 0 when everything is valid, 1 on any problem.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import yaml  # noqa: E402

import checks  # noqa: E402
import kustomize_lite  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


# --------------------------------------------------------------------------- rendering

def render_kubectl(kubectl, directory):
    proc = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        raise kustomize_lite.KustomizeError(
            f"{kubectl} kustomize {directory} failed: {proc.stderr.strip()}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d is not None]


def _doc_key(d):
    meta = d.get("metadata") or {}
    return (d.get("apiVersion"), d.get("kind"), meta.get("namespace"), meta.get("name"))


def _unwrapped(d):
    """kubectl wraps long base64 Secret data over lines; the bytes are the same."""
    if d.get("kind") != "Secret" or not d.get("data"):
        return d
    d = dict(d)
    d["data"] = {k: "".join(str(v).split()) for k, v in d["data"].items()}
    return d


def compare_renders(mine, theirs):
    """Differences between two renders, as a list of strings (empty: identical)."""
    out = []
    a = {_doc_key(d): _unwrapped(d) for d in mine}
    b = {_doc_key(d): _unwrapped(d) for d in theirs}
    for k in sorted(set(a) - set(b), key=str):
        out.append(f"only in the built-in render: {k[1]}/{k[3]}")
    for k in sorted(set(b) - set(a), key=str):
        out.append(f"only in the kubectl render: {k[1]}/{k[3]}")
    for k in sorted(set(a) & set(b), key=str):
        if a[k] != b[k]:
            out.append(f"{k[1]}/{k[3]} differs between the built-in and the kubectl render:\n"
                       + _first_difference(a[k], b[k]))
    if len(mine) != len(a) or len(theirs) != len(b):
        out.append("a render contains duplicate resources")
    return out


def _first_difference(x, y, path=""):
    if type(x) is not type(y):
        return f"  at {path or '/'}: {x!r} != {y!r}"
    if isinstance(x, dict):
        for k in sorted(set(x) | set(y), key=str):
            if k not in x or k not in y:
                return f"  at {path}/{k}: present only in the " + \
                    ("built-in" if k in x else "kubectl") + " render"
            if x[k] != y[k]:
                return _first_difference(x[k], y[k], f"{path}/{k}")
    if isinstance(x, list):
        if len(x) != len(y):
            return f"  at {path}: {len(x)} items != {len(y)} items"
        for i, (p, q) in enumerate(zip(x, y)):
            if p != q:
                return _first_difference(p, q, f"{path}/{i}")
    return f"  at {path or '/'}: {x!r} != {y!r}"


# --------------------------------------------------------------------------- source style

def check_style_text(text, name):
    """YAML source style: 2-space indentation, no tabs, no trailing blanks, final newline."""
    errs = []
    if text and not text.endswith("\n"):
        errs.append(f"{name}: no newline at end of file")
    if "\r" in text:
        errs.append(f"{name}: CRLF line endings")
    block_scalar_indent = None
    prev_indent = 0
    for n, line in enumerate(text.split("\n"), 1):
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if block_scalar_indent is not None:
            if stripped == "" or indent >= block_scalar_indent:
                continue
            block_scalar_indent = None
        if "\t" in line[:indent + 1]:
            errs.append(f"{name}:{n}: tab in indentation")
        if line.rstrip() != line:
            errs.append(f"{name}:{n}: trailing whitespace")
        if not stripped or stripped.startswith("#"):
            continue
        if indent % 2:
            errs.append(f"{name}:{n}: indentation of {indent} spaces is not a multiple of 2")
        elif indent > prev_indent + 4 or (indent > prev_indent + 2 and
                                          not stripped.startswith("- ")
                                          and not _after_dash(text, n)):
            errs.append(f"{name}:{n}: indentation jumps by more than 2 spaces")
        prev_indent = indent + (2 if stripped.startswith("- ") else 0)
        if re.search(r":\s*[|>][-+0-9]*\s*(#.*)?$", stripped):
            block_scalar_indent = indent + 1
    return errs


def _after_dash(text, n):
    lines = text.split("\n")
    for prev in reversed(lines[:n - 1]):
        if prev.strip() and not prev.strip().startswith("#"):
            return prev.lstrip(" ").startswith("- ")
    return False


def check_style(root):
    errs = []
    for dirpath, _, files in os.walk(root):
        for f in sorted(files):
            if f.endswith((".yaml", ".yml")):
                p = os.path.join(dirpath, f)
                with open(p, encoding="utf-8") as fh:
                    text = fh.read()
                errs.extend(check_style_text(text, os.path.relpath(p, root)))
                try:
                    list(yaml.safe_load_all(text))
                except yaml.YAMLError as e:
                    errs.append(f"{os.path.relpath(p, root)}: invalid YAML: {e}")
    return errs


# --------------------------------------------------------------------------- Dockerfile

def check_dockerfile(path, contract):
    """Static checks that keep the image in step with the manifests."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    logical = re.sub(r"\\\n", " ", text)
    lines = [ln.strip() for ln in logical.split("\n") if ln.strip() and
             not ln.strip().startswith("#")]
    errs = []
    stages = [ln for ln in lines if ln.upper().startswith("FROM ")]
    if len(stages) < 2:
        errs.append(f"{path}: expected a multi-stage build (build and runtime stages)")
        return errs
    final_from = stages[-1]
    if "bookworm-slim" not in final_from and "${DEBIAN_RELEASE}-slim" not in final_from:
        errs.append(f"{path}: the runtime stage must be debian bookworm-slim")
    final = lines[lines.index(final_from):]
    final_text = "\n".join(final)
    for pkg in ("libgrpc++1.51", "libprotobuf32", "librdkafka++1", "librocksdb7.8",
                "libabsl20220623", "libssl3", "tini"):
        if not re.search(rf"(^|\s){re.escape(pkg)}(\s|$)", final_text, re.M):
            errs.append(f"{path}: runtime stage does not install {pkg}")
    for dev in ("-dev ", "g++", "cmake ", "ninja-build"):
        if re.search(r"apt-get install[^\n]*" + re.escape(dev), final_text):
            errs.append(f"{path}: runtime stage installs build tooling ({dev.strip()})")
    users = [ln.split(None, 1)[1] for ln in final if ln.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] != str(contract["uid"]):
        errs.append(f"{path}: runtime USER must be numeric {contract['uid']} "
                    f"(runAsNonRoot needs a numeric user)")
    ep = [ln for ln in final if ln.upper().startswith("ENTRYPOINT ")]
    cmd = [ln for ln in final if ln.upper().startswith("CMD ")]
    if not ep or '"/usr/bin/tini"' not in ep[-1] or not ep[-1].split(None, 1)[1].startswith("["):
        errs.append(f"{path}: ENTRYPOINT must be the exec form of /usr/bin/tini")
    binaries = [s["binary"] for s in contract["services"]]
    if not cmd or not any(f'"{b}"' in cmd[-1] for b in binaries):
        errs.append(f"{path}: CMD must name one service binary (exec form)")
    if "apt-get update" in final_text and "rm -rf /var/lib/apt/lists" not in final_text:
        errs.append(f"{path}: runtime stage keeps the apt lists")
    if not re.search(r"COPY\s+--from=build\s+\S*/usr/local/bin/?\s+/usr/local/bin/?", final_text):
        errs.append(f"{path}: runtime stage must copy the binaries into /usr/local/bin")
    build_text = "\n".join(lines[:lines.index(final_from)])
    for b in [os.path.basename(x) for x in binaries] + ["crmctl"]:
        if b not in build_text:
            errs.append(f"{path}: build stage does not verify that {b} was installed")
    return errs


# --------------------------------------------------------------------------- main mode

def load_expectations(root):
    with open(os.path.join(HERE, "expectations.yaml"), encoding="utf-8") as f:
        exp = yaml.safe_load(f)
    envs = exp.pop("environments")
    return exp, envs


def validate(root, env_names, kubectl=None, dockerfile=None):
    contract, envs = load_expectations(root)
    problems = []
    total = 0
    for name in env_names:
        if name not in envs:
            problems.append(f"{name}: unknown environment (known: {', '.join(envs)})")
            continue
        env = envs[name]
        directory = os.path.join(root, env["path"])
        try:
            docs = kustomize_lite.build(directory)
        except (kustomize_lite.KustomizeError, OSError) as e:
            problems.append(f"{name}: render failed: {e}")
            continue
        total += len(docs)
        problems.extend(f"{name}: {e}" for e in checks.check_environment(docs, contract, env))
        if kubectl:
            try:
                theirs = render_kubectl(kubectl, directory)
            except (kustomize_lite.KustomizeError, OSError,
                    subprocess.TimeoutExpired) as e:
                problems.append(f"{name}: {e}")
                continue
            diff = compare_renders(docs, theirs)
            problems.extend(f"{name}: {d}" for d in diff)
            if diff:
                problems.extend(f"{name} (kubectl render): {e}"
                                for e in checks.check_environment(theirs, contract, env))
    problems.extend(f"style: {e}" for e in check_style(root))
    if dockerfile:
        problems.extend(f"docker: {e}" for e in check_dockerfile(dockerfile, contract))
    return total, problems


# --------------------------------------------------------------------------- self-test

GOOD_CONTRACT = {
    "services": [{"name": "crm-demo", "binary": "/usr/local/bin/crm-demo", "grpcPort": 50051}],
    "container": "server", "metricsPort": 9464, "dataDir": "/var/lib/crm",
    "backupDir": "/var/lib/crm-backups", "uid": 10001,
    "configEnv": ["CRM_LISTEN", "CRM_METRICS_LISTEN", "CRM_DATA_DIR", "CRM_BACKUP_DIR",
                  "CRM_KAFKA_BROKERS", "CRM_KAFKA_PROPERTIES_FILE"],
    "secret": {"name": "crm-secrets",
               "env": {"CRM_JWT_HS256_KEY": "token-key", "CRM_MASTER_KEY": "master-key"}},
    "commonLabels": {"app.kubernetes.io/part-of": "crm"},
    "gatewayLabels": {"app.kubernetes.io/component": "gateway"},
    "monitoringNamespace": "monitoring",
    "kafka": {"cluster": "crm-kafka", "bootstrap": "crm-kafka-kafka-bootstrap:9093",
              "partitions": 12, "config": {"retention.ms": -1, "cleanup.policy": "delete"},
              "topics": ["crm.demo.v1"],
              "client": {"propertiesEnv": "CRM_KAFKA_PROPERTIES_FILE",
                         "securityProtocol": "ssl", "authentication": "tls"},
              "users": {"crm-demo": {"write": ["crm.demo.v1"], "read": ["crm.demo.v1"],
                                     "groups": ["crm-demo"], "idempotentWrite": True}}},
}
GOOD_ENV = {"namespace": "crm-test", "secretInRender": True, "imageTagRequired": True,
            "replicas": {"crm-demo": 2}, "storage": "1Gi", "topicReplicas": 3,
            "minInsyncReplicas": 2}

GOOD_MANIFESTS = """
apiVersion: v1
kind: Namespace
metadata:
  name: crm-test
  labels:
    pod-security.kubernetes.io/enforce: restricted
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: crm-demo-config
  namespace: crm-test
  labels: {app.kubernetes.io/part-of: crm}
data:
  CRM_LISTEN: 0.0.0.0:50051
  CRM_METRICS_LISTEN: 0.0.0.0:9464
  CRM_DATA_DIR: /var/lib/crm
  CRM_BACKUP_DIR: /var/lib/crm-backups
  CRM_KAFKA_BROKERS: crm-kafka-kafka-bootstrap:9093
  CRM_KAFKA_PROPERTIES_FILE: /etc/crm/kafka/kafka.properties
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: crm-kafka-client
  namespace: crm-test
  labels: {app.kubernetes.io/part-of: crm}
data:
  kafka.properties: |
    # mutual TLS
    security.protocol=ssl
    ssl.ca.location=/etc/crm/kafka/ca.crt
    ssl.certificate.location=/etc/crm/kafka/user.crt
    ssl.key.location=/etc/crm/kafka/user.key
---
apiVersion: v1
kind: Secret
metadata:
  name: crm-secrets
  namespace: crm-test
  labels: {app.kubernetes.io/part-of: crm}
type: Opaque
data: {token-key: a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=, master-key: bQ==}
---
apiVersion: v1
kind: Service
metadata:
  name: crm-demo-headless
  namespace: crm-test
  labels: {app.kubernetes.io/part-of: crm}
spec:
  clusterIP: None
  selector: {app.kubernetes.io/name: crm-demo}
  ports: [{name: grpc, port: 50051, targetPort: grpc}]
---
apiVersion: v1
kind: Service
metadata:
  name: crm-demo
  namespace: crm-test
  labels: {app.kubernetes.io/part-of: crm}
spec:
  selector: {app.kubernetes.io/name: crm-demo}
  ports:
    - {name: grpc, port: 50051, targetPort: grpc}
    - {name: metrics, port: 9464, targetPort: 9464}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: crm-demo
  namespace: crm-test
  labels: {app.kubernetes.io/part-of: crm}
spec:
  serviceName: crm-demo-headless
  replicas: 2
  selector:
    matchLabels: {app.kubernetes.io/name: crm-demo}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: crm-demo
        app.kubernetes.io/part-of: crm
        app.kubernetes.io/component: grpc-service
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        fsGroup: 10001
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: server
          image: registry.test/crm-backend:1.0.0
          args: [/usr/local/bin/crm-demo]
          ports:
            - {name: grpc, containerPort: 50051}
            - {name: metrics, containerPort: 9464}
          envFrom:
            - configMapRef: {name: crm-demo-config}
          env:
            - name: CRM_JWT_HS256_KEY
              valueFrom: {secretKeyRef: {name: crm-secrets, key: token-key}}
            - name: CRM_MASTER_KEY
              valueFrom: {secretKeyRef: {name: crm-secrets, key: master-key}}
          resources:
            requests: {cpu: 100m, memory: 128Mi}
            limits: {cpu: "1", memory: 1Gi}
          readinessProbe: {grpc: {port: 50051}}
          livenessProbe: {grpc: {port: 50051}}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          volumeMounts:
            - {name: data, mountPath: /var/lib/crm}
            - {name: backups, mountPath: /var/lib/crm-backups}
            - {name: kafka, mountPath: /etc/crm/kafka, readOnly: true}
            - {name: tmp, mountPath: /tmp}
      volumes:
        - {name: tmp, emptyDir: {}}
        - name: kafka
          projected:
            sources:
              - configMap:
                  name: crm-kafka-client
                  items: [{key: kafka.properties, path: kafka.properties}]
              - secret:
                  name: crm-kafka-cluster-ca-cert
                  items: [{key: ca.crt, path: ca.crt}]
              - secret:
                  name: crm-demo
                  items: [{key: user.crt, path: user.crt}, {key: user.key, path: user.key}]
  volumeClaimTemplates:
    - metadata: {name: data}
      spec:
        accessModes: [ReadWriteOnce]
        resources: {requests: {storage: 1Gi}}
    - metadata: {name: backups}
      spec:
        accessModes: [ReadWriteOnce]
        resources: {requests: {storage: 1Gi}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: crm-demo
  namespace: crm-test
  labels: {app.kubernetes.io/part-of: crm}
spec:
  maxUnavailable: 1
  selector:
    matchLabels: {app.kubernetes.io/name: crm-demo}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: crm-demo
  namespace: crm-test
  labels: {app.kubernetes.io/part-of: crm}
spec:
  podSelector:
    matchLabels: {app.kubernetes.io/name: crm-demo}
  policyTypes: [Ingress]
  ingress:
    - from:
        - podSelector: {matchLabels: {app.kubernetes.io/component: gateway}}
        - podSelector: {matchLabels: {app.kubernetes.io/part-of: crm}}
      ports: [{port: grpc}]
    - from:
        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
      ports: [{port: metrics}]
---
apiVersion: kafka.strimzi.io/v1beta2
kind: KafkaTopic
metadata:
  name: crm-demo-v1
  namespace: crm-test
  labels: {strimzi.io/cluster: crm-kafka, app.kubernetes.io/part-of: crm}
spec:
  topicName: crm.demo.v1
  partitions: 12
  replicas: 3
  config: {min.insync.replicas: 2, retention.ms: -1, cleanup.policy: delete}
---
apiVersion: kafka.strimzi.io/v1beta2
kind: KafkaUser
metadata:
  name: crm-demo
  namespace: crm-test
  labels: {strimzi.io/cluster: crm-kafka, app.kubernetes.io/part-of: crm}
spec:
  authentication: {type: tls}
  authorization:
    type: simple
    acls:
      - resource: {type: topic, name: crm.demo.v1, patternType: literal}
        operations: [Read, Write, Describe]
      - resource: {type: group, name: crm-demo, patternType: literal}
        operations: [Read]
      - resource: {type: cluster}
        operations: [IdempotentWrite]
"""


def _find(docs, kind, name=None):
    for d in docs:
        if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name):
            return d
    raise KeyError(kind)


def _ctr(docs):
    return _find(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]


def _pod(docs):
    return _find(docs, "StatefulSet")["spec"]["template"]["spec"]


def _set(obj, path, value):
    *head, last = path
    for p in head:
        obj = obj[p]
    if value is _DELETE:
        del obj[last]
    else:
        obj[last] = value


_DELETE = object()


def _props(docs, old, new):
    cm = _find(docs, "ConfigMap", "crm-kafka-client")
    cm["data"]["kafka.properties"] = cm["data"]["kafka.properties"].replace(old, new)


def _user(docs):
    return _find(docs, "KafkaUser")["spec"]["authorization"]

# (what is broken, mutation, text the error must contain)
MUTATIONS = [
    ("missing kind", lambda d: _set(d[1], ["kind"], _DELETE), "missing kind"),
    ("missing name", lambda d: _set(d[1]["metadata"], ["name"], _DELETE),
     "missing metadata.name"),
    ("misspelt field", lambda d: _ctr(d).update(readinesProbe={}), "unknown field"),
    ("httpGet readiness probe",
     lambda d: _set(_ctr(d), ["readinessProbe"], {"httpGet": {"port": 50051, "path": "/"}}),
     "native grpc handler"),
    ("liveness probe missing", lambda d: _set(_ctr(d), ["livenessProbe"], _DELETE),
     "livenessProbe missing"),
    ("probe on the wrong port",
     lambda d: _set(_ctr(d), ["readinessProbe"], {"grpc": {"port": 9464}}), "grpc port"),
    ("liveness gated on a service",
     lambda d: _set(_ctr(d), ["livenessProbe"],
                    {"grpc": {"port": 50051, "service": "crm.v1.LeadsService"}}),
     "livenessProbe grpc service"),
    ("no memory limit", lambda d: _set(_ctr(d)["resources"]["limits"], ["memory"], _DELETE),
     "resources.limits.memory missing"),
    ("request above limit",
     lambda d: _set(_ctr(d)["resources"]["requests"], ["cpu"], "2"), "above its limit"),
    ("writable root filesystem",
     lambda d: _set(_ctr(d)["securityContext"], ["readOnlyRootFilesystem"], False),
     "readOnlyRootFilesystem"),
    ("capabilities kept",
     lambda d: _set(_ctr(d)["securityContext"], ["capabilities"], {"drop": ["NET_RAW"]}),
     "drop must contain ALL"),
    ("privilege escalation",
     lambda d: _set(_ctr(d)["securityContext"], ["allowPrivilegeEscalation"], True),
     "allowPrivilegeEscalation"),
    ("root allowed", lambda d: _set(_pod(d)["securityContext"], ["runAsNonRoot"], False),
     "runAsNonRoot"),
    ("seccomp unconfined",
     lambda d: _set(_pod(d)["securityContext"], ["seccompProfile"], {"type": "Unconfined"}),
     "seccompProfile"),
    ("no /tmp emptyDir", lambda d: _ctr(d)["volumeMounts"].pop(), "/tmp"),
    ("backups on the data volume",
     lambda d: _set(_ctr(d)["volumeMounts"][1], ["name"], "data"), "CRM_BACKUP_DIR"),
    ("backups on the root filesystem",
     lambda d: _set(_find(d, "ConfigMap")["data"], ["CRM_BACKUP_DIR"], "/var/lib/x"),
     "CRM_BACKUP_DIR must be"),
    ("token key too short",
     lambda d: _set(_find(d, "Secret")["data"], ["token-key"], "c2hvcnQ="),
     "shorter than 32 bytes"),
    ("no volumeClaimTemplates",
     lambda d: _set(_find(d, "StatefulSet")["spec"], ["volumeClaimTemplates"], []),
     "volumeClaimTemplates"),
    ("serviceName dangling",
     lambda d: _set(_find(d, "StatefulSet")["spec"], ["serviceName"], "nope"),
     "serviceName 'nope'"),
    ("serviceName not headless",
     lambda d: _set(_find(d, "StatefulSet")["spec"], ["serviceName"], "crm-demo"),
     "not headless"),
    ("ConfigMap reference dangling",
     lambda d: _set(_ctr(d)["envFrom"][0]["configMapRef"], ["name"], "typo"),
     "ConfigMap 'typo' does not exist"),
    ("Secret key missing",
     lambda d: _set(_ctr(d)["env"][0]["valueFrom"]["secretKeyRef"], ["key"], "nokey"),
     "has no key"),
    ("secret in clear text",
     lambda d: _set(_ctr(d), ["env"], [{"name": "CRM_JWT_HS256_KEY", "value": "x"}]),
     "clear text"),
    ("listen port differs",
     lambda d: _set(_find(d, "ConfigMap")["data"], ["CRM_LISTEN"], "0.0.0.0:50099"),
     "CRM_LISTEN"),
    ("env var missing",
     lambda d: _set(_find(d, "ConfigMap")["data"], ["CRM_KAFKA_BROKERS"], _DELETE),
     "CRM_KAFKA_BROKERS"),
    ("data dir not on the PVC",
     lambda d: _set(_find(d, "ConfigMap")["data"], ["CRM_DATA_DIR"], "/data"),
     "CRM_DATA_DIR"),
    ("wrong binary", lambda d: _set(_ctr(d), ["args"], ["/usr/local/bin/crm-other"]),
     "args[0]"),
    ("latest image", lambda d: _set(_ctr(d), ["image"], "crm-backend:latest"),
     "pinned tag"),
    ("Service selects nothing",
     lambda d: _set(_find(d, "Service", "crm-demo")["spec"], ["selector"], {"x": "y"}),
     "matches no pods"),
    ("Service targetPort unknown",
     lambda d: _set(_find(d, "Service", "crm-demo")["spec"]["ports"][1], ["targetPort"], 1),
     "targetPort"),
    ("pod selector does not match template",
     lambda d: _set(_find(d, "StatefulSet")["spec"]["selector"], ["matchLabels"], {"a": "b"}),
     "spec.selector does not match"),
    ("PDB selects nothing",
     lambda d: _set(_find(d, "PodDisruptionBudget")["spec"]["selector"], ["matchLabels"],
                    {"x": "y"}), "selector matches no pods"),
    ("PDB blocks eviction",
     lambda d: _find(d, "PodDisruptionBudget")["spec"].update(
         {"minAvailable": 2, "maxUnavailable": None}) or
     _find(d, "PodDisruptionBudget")["spec"].pop("maxUnavailable"), "no pod could ever"),
    ("NetworkPolicy open to all",
     lambda d: _find(d, "NetworkPolicy")["spec"]["ingress"][0].pop("from"),
     "admits everyone"),
    ("NetworkPolicy any namespace",
     lambda d: _set(_find(d, "NetworkPolicy")["spec"]["ingress"][1]["from"][0],
                    ["namespaceSelector"], {}), "namespaceSelector admits"),
    ("NetworkPolicy monitoring on gRPC",
     lambda d: _set(_find(d, "NetworkPolicy")["spec"]["ingress"][1], ["ports"],
                    [{"port": "grpc"}]), "metrics port"),
    ("topic partitions",
     lambda d: _set(_find(d, "KafkaTopic")["spec"], ["partitions"], 6), "partitions 6"),
    ("topic retention",
     lambda d: _set(_find(d, "KafkaTopic")["spec"]["config"], ["retention.ms"], 604800000),
     "retention.ms"),
    ("topic min ISR",
     lambda d: _set(_find(d, "KafkaTopic")["spec"]["config"], ["min.insync.replicas"], 1),
     "min.insync.replicas"),
    ("topic without cluster label",
     lambda d: _find(d, "KafkaTopic")["metadata"]["labels"].pop("strimzi.io/cluster"),
     "strimzi.io/cluster"),
    ("topic missing", lambda d: d.remove(_find(d, "KafkaTopic")), "missing"),
    ("replica count", lambda d: _set(_find(d, "StatefulSet")["spec"], ["replicas"], 1),
     "replicas 1"),
    ("wrong namespace", lambda d: _set(_find(d, "ConfigMap")["metadata"], ["namespace"], "x"),
     "namespace 'x'"),
    ("common label missing",
     lambda d: _find(d, "ConfigMap")["metadata"]["labels"].clear(), "common label"),
    ("service links on", lambda d: _set(_pod(d), ["enableServiceLinks"], True),
     "enableServiceLinks"),
    ("duplicate resource", lambda d: d.append(copy.deepcopy(_find(d, "ConfigMap"))),
     "duplicate"),
    ("plaintext to Kafka",
     lambda d: _props(d, "security.protocol=ssl", "security.protocol=plaintext"),
     "security.protocol plaintext"),
    ("a client setting in the Kafka properties",
     lambda d: _props(d, "# mutual TLS", "acks=1"), "not a connection setting"),
    ("a Kafka password in a ConfigMap",
     lambda d: _props(d, "# mutual TLS", "sasl.password=x"), "clear text"),
    ("broker certificates not verified",
     lambda d: _props(d, "# mutual TLS", "enable.ssl.certificate.verification=false"),
     "verification is off"),
    ("Kafka properties file not mounted",
     lambda d: _set(_find(d, "ConfigMap")["data"], ["CRM_KAFKA_PROPERTIES_FILE"],
                    "/etc/kafka.properties"), "not a file of a mounted"),
    ("Kafka client key mounted writable",
     lambda d: _set(_ctr(d)["volumeMounts"][2], ["readOnly"], False), "read-only"),
    ("another user's client certificate",
     lambda d: _set(_pod(d)["volumes"][1]["projected"]["sources"][2]["secret"], ["name"],
                    "crm-other"), "KafkaUser crm-demo"),
    ("client key not in the properties",
     lambda d: _props(d, "ssl.key.location=/etc/crm/kafka/user.key", ""),
     "no ssl.key.location"),
    ("properties ConfigMap key missing",
     lambda d: _set(_pod(d)["volumes"][1]["projected"]["sources"][0]["configMap"]["items"][0],
                    ["key"], "typo"), "has no key 'typo'"),
    ("ACL beyond the code's use",
     lambda d: _user(d)["acls"][0]["operations"].append("Delete"), "grants Delete"),
    ("ACL on a topic prefix",
     lambda d: _set(_user(d)["acls"][0]["resource"], ["patternType"], "prefix"),
     "literal name"),
    ("ACL missing",
     lambda d: _user(d)["acls"].pop(1), "lacks Read on group crm-demo"),
    ("KafkaUser without ACLs",
     lambda d: _set(_user(d), ["type"], "none"), "authorization type"),
    ("KafkaUser with a password",
     lambda d: _set(_find(d, "KafkaUser")["spec"]["authentication"], ["type"],
                    "scram-sha-512"), "authentication 'scram-sha-512'"),
    ("KafkaUser missing", lambda d: d.remove(_find(d, "KafkaUser")), "KafkaUser/crm-demo: missing"),
]


RENDER_FIXTURE = {
    "base/kustomization.yaml": """
resources: [app.yaml, topic.yaml]
configMapGenerator:
  - name: app-config
    literals: ["X=<a&b>", "Y=\u00fcn\u00ef", "Z=1"]
""",
    "base/app.yaml": """
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: app
spec:
  serviceName: app
  selector:
    matchLabels: {app: demo}
  template:
    metadata:
      labels: {app: demo}
    spec:
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector: {matchLabels: {app: demo}}
      containers:
        - name: c
          image: img:1
          envFrom: [{configMapRef: {name: app-config}}]
          env:
            - {name: A, value: "1"}
            - {name: B, valueFrom: {secretKeyRef: {name: creds, key: k}}}
          volumeMounts:
            - {name: data, mountPath: /data}
            - {name: tmp, mountPath: /tmp}
      volumes:
        - {name: tmp, emptyDir: {}}
        - {name: s, secret: {secretName: creds}}
  volumeClaimTemplates:
    - metadata: {name: data}
      spec:
        accessModes: [ReadWriteOnce]
        resources: {requests: {storage: 1Gi}}
    - metadata: {name: backups}
      spec:
        accessModes: [ReadWriteOnce]
        resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Service
metadata:
  name: app
  labels: {tier: web}
spec:
  clusterIP: None
  selector: {app: demo}
  ports: [{name: p, port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: app
spec:
  podSelector: {matchLabels: {app: demo}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: demo}}}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: app
spec:
  maxUnavailable: 1
  selector: {matchLabels: {app: demo}}
""",
    "base/topic.yaml": """
apiVersion: kafka.strimzi.io/v1beta2
kind: KafkaTopic
metadata:
  name: t
spec:
  partitions: 12
  config: {a: 1}
""",
    "overlay/kustomization.yaml": """
namespace: ns1
namePrefix: p-
nameSuffix: -s
commonLabels: {team: crm}
commonAnnotations: {owner: crm}
labels:
  - pairs: {env: test}
    includeTemplates: true
  - pairs: {sel: yes-sel}
    includeSelectors: true
resources: [../base, ns.yaml]
images:
  - {name: img, newName: reg.test/img, newTag: "2"}
replicas:
  - {name: app, count: 3}
secretGenerator:
  - name: creds
    type: kubernetes.io/tls
    literals: [k=v, tls.crt=a]
patches:
  - patch: |-
      apiVersion: apps/v1
      kind: StatefulSet
      metadata:
        name: app
      spec:
        template:
          spec:
            containers:
              - name: c
                env:
                  - {name: C, value: "3"}
                  - {name: A, $patch: delete}
                volumeMounts:
                  - {name: tmp2, mountPath: /tmp}
            volumes:
              - {name: tmp2, emptyDir: {}}
  - target: {kind: Service, labelSelector: tier=web}
    patch: |-
      - op: add
        path: /metadata/annotations
        value: {patched: "yes"}
  - target: {kind: KafkaTopic}
    patch: |-
      apiVersion: kafka.strimzi.io/v1beta2
      kind: KafkaTopic
      metadata:
        name: any
      spec:
        replicas: 3
        config: {b: 2}
  - target: {kind: StatefulSet, name: ap.*}
    patch: |-
      - op: replace
        path: /spec/volumeClaimTemplates/0/spec/resources/requests/storage
        value: 2Gi
""",
    "overlay/ns.yaml": """
apiVersion: v1
kind: Namespace
metadata:
  name: whatever
""",
}

# Facts of the fixture's render, established with kustomize v5.5 (kubectl 1.32).
RENDER_FACTS = [
    (("ConfigMap", "p-app-config-s-ttgk2t7c2c"), ["metadata", "namespace"], "ns1"),
    (("Secret", "p-creds-s-k47k7h42g9"), ["type"], "kubernetes.io/tls"),
    (("Namespace", "ns1"), ["metadata", "name"], "ns1"),
    (("StatefulSet", "p-app-s"), ["spec", "replicas"], 3),
    (("StatefulSet", "p-app-s"), ["spec", "serviceName"], "p-app-s"),
    (("StatefulSet", "p-app-s"), ["spec", "selector", "matchLabels"],
     {"app": "demo", "team": "crm", "sel": "yes-sel"}),
    (("StatefulSet", "p-app-s"), ["spec", "volumeClaimTemplates", 0, "metadata", "labels"],
     {"team": "crm", "env": "test", "sel": "yes-sel"}),
    (("StatefulSet", "p-app-s"), ["spec", "volumeClaimTemplates", 0, "spec", "resources",
                                  "requests", "storage"], "2Gi"),
    (("StatefulSet", "p-app-s"), ["spec", "template", "spec", "containers", 0, "image"],
     "reg.test/img:2"),
    (("StatefulSet", "p-app-s"), ["spec", "template", "spec", "containers", 0, "env"],
     [{"name": "C", "value": "3"},
      {"name": "B", "valueFrom": {"secretKeyRef": {"name": "p-creds-s-k47k7h42g9",
                                                   "key": "k"}}}]),
    (("StatefulSet", "p-app-s"), ["spec", "template", "spec", "containers", 0, "envFrom"],
     [{"configMapRef": {"name": "p-app-config-s-ttgk2t7c2c"}}]),
    (("StatefulSet", "p-app-s"), ["spec", "template", "spec", "containers", 0,
                                  "volumeMounts"],
     [{"name": "tmp2", "mountPath": "/tmp"}, {"name": "data", "mountPath": "/data"}]),
    (("StatefulSet", "p-app-s"), ["spec", "template", "spec", "volumes", 2, "secret",
                                  "secretName"], "p-creds-s-k47k7h42g9"),
    (("StatefulSet", "p-app-s"), ["spec", "template", "metadata", "annotations"],
     {"owner": "crm"}),
    (("StatefulSet", "p-app-s"), ["spec", "template", "spec", "topologySpreadConstraints", 0,
                                  "labelSelector", "matchLabels"],
     {"app": "demo", "team": "crm", "sel": "yes-sel"}),
    (("Service", "p-app-s"), ["metadata", "annotations"], {"owner": "crm", "patched": "yes"}),
    (("Service", "p-app-s"), ["spec", "selector"],
     {"app": "demo", "team": "crm", "sel": "yes-sel"}),
    (("NetworkPolicy", "p-app-s"), ["spec", "ingress", 0, "from", 0, "podSelector",
                                    "matchLabels"],
     {"app": "demo", "team": "crm", "sel": "yes-sel"}),
    (("PodDisruptionBudget", "p-app-s"), ["spec", "selector", "matchLabels"],
     {"app": "demo", "team": "crm", "sel": "yes-sel"}),
    (("KafkaTopic", "p-t-s"), ["spec"],
     {"partitions": 12, "replicas": 3, "config": {"a": 1, "b": 2}}),
]


def _dig(obj, path):
    for p in path:
        obj = obj[p]
    return obj


def self_test(kubectl=None):
    failures = []
    docs = [d for d in yaml.safe_load_all(GOOD_MANIFESTS) if d]

    good = checks.check_environment(copy.deepcopy(docs), GOOD_CONTRACT, GOOD_ENV)
    if good:
        failures.append("known-good manifests were rejected:\n    " + "\n    ".join(good))
    for what, mutate, expect in MUTATIONS:
        broken = copy.deepcopy(docs)
        mutate(broken)
        errs = checks.check_environment(broken, GOOD_CONTRACT, GOOD_ENV)
        if not any(expect in e for e in errs):
            failures.append(f"broken manifests passed unnoticed: {what} "
                            f"(expected an error mentioning {expect!r}, got {errs})")
    # a readiness-gated service: fine as it is, refused once its headless
    # Service lists not-ready pods (round-robin clients would reach them)
    gated = copy.deepcopy(GOOD_CONTRACT)
    gated["services"][0]["readinessService"] = "crm.v1.DemoService"
    gated_docs = copy.deepcopy(docs)
    _ctr(gated_docs)["readinessProbe"]["grpc"]["service"] = "crm.v1.DemoService"
    errs = checks.check_environment(copy.deepcopy(gated_docs), gated, GOOD_ENV)
    if errs:
        failures.append("known-good gated manifests were rejected:\n    " + "\n    ".join(errs))
    _find(gated_docs, "Service", "crm-demo-headless")["spec"]["publishNotReadyAddresses"] = True
    errs = checks.check_environment(gated_docs, gated, GOOD_ENV)
    if not any("publishNotReadyAddresses" in e for e in errs):
        failures.append("a gated service's headless Service listing not-ready pods passed "
                        f"unnoticed (got {errs})")

    # broken YAML text and a broken document stream
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "kustomization.yaml"), "w", encoding="utf-8") as f:
            f.write("resources: [a.yaml]\n")
        with open(os.path.join(tmp, "a.yaml"), "w", encoding="utf-8") as f:
            f.write("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n data: 1\n")
        try:
            kustomize_lite.build(tmp)
            failures.append("invalid YAML was rendered without an error")
        except kustomize_lite.KustomizeError:
            pass
        with open(os.path.join(tmp, "kustomization.yaml"), "w", encoding="utf-8") as f:
            f.write("resources: []\nvars: []\n")
        try:
            kustomize_lite.build(tmp)
            failures.append("an unsupported kustomize field was silently ignored")
        except kustomize_lite.KustomizeError:
            pass

    # the style check
    for text, what in (("a:\n\tb: 1\n", "tab"), ("a:\n   b: 1\n", "odd indentation"),
                       ("a:\n      b: 1\n", "indentation jump"), ("a: 1 \n", "trailing"),
                       ("a: 1", "final newline")):
        if not check_style_text(text, "t.yaml"):
            failures.append(f"style check missed: {what}")
    if check_style_text("a:\n  - b: 1\n    c:\n      - 2\n  d: |\n     x\n", "t.yaml"):
        failures.append("style check rejected well-formed YAML")

    # the renderer, on a fixture using every kustomize feature it implements
    with tempfile.TemporaryDirectory() as tmp:
        for rel, text in RENDER_FIXTURE.items():
            p = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w", encoding="utf-8") as f:
                f.write(text.lstrip("\n"))
        overlay = os.path.join(tmp, "overlay")
        try:
            rendered = kustomize_lite.build(overlay)
        except kustomize_lite.KustomizeError as e:
            failures.append(f"renderer failed on its fixture: {e}")
            rendered = []
        by = {(d["kind"], d["metadata"]["name"]): d for d in rendered}
        if rendered and len(by) != 8:
            failures.append(f"renderer fixture: expected 8 documents, got {sorted(by)}")
        for key, path, want in RENDER_FACTS:
            try:
                got = _dig(by[key], path)
            except (KeyError, IndexError, TypeError):
                got = "<absent>"
            if got != want:
                failures.append(f"renderer fixture: {key[0]}/{key[1]} "
                                f"{'/'.join(map(str, path))} is {got!r}, expected {want!r}")
        if kubectl and rendered:
            try:
                theirs = render_kubectl(kubectl, overlay)
                failures.extend("renderer fixture: " + d
                                for d in compare_renders(rendered, theirs))
            except (kustomize_lite.KustomizeError, OSError, subprocess.TimeoutExpired) as e:
                failures.append(f"renderer fixture: {e}")

    checks_run = len(MUTATIONS) + 3 + len(RENDER_FACTS)
    return checks_run, failures


# --------------------------------------------------------------------------- CLI

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("envs", nargs="*", help="environments to validate (base dev prod)")
    ap.add_argument("--root", default=os.path.dirname(HERE), help="deploy/k8s directory")
    ap.add_argument("--kubectl", help="kubectl binary to cross-check the render with")
    ap.add_argument("--dockerfile", help="Dockerfile to check against the manifests")
    ap.add_argument("--render", metavar="DIR", help="print the render of DIR and exit")
    ap.add_argument("--self-test", action="store_true", help="run the self-test")
    args = ap.parse_args(argv)

    if args.render:
        try:
            sys.stdout.write(kustomize_lite.dump(kustomize_lite.build(args.render)))
        except kustomize_lite.KustomizeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0

    if args.self_test:
        if args.kubectl and not shutil.which(args.kubectl):
            print(f"error: {args.kubectl} not found", file=sys.stderr)
            return 1
        n, failures = self_test(args.kubectl)
        for f in failures:
            print(f"self-test FAILED: {f}", file=sys.stderr)
        if failures:
            return 1
        how = " (renderer cross-checked with kubectl)" if args.kubectl else ""
        print(f"self-test: {n} checks behaved as expected{how}")
        return 0

    if not args.envs:
        ap.error("name the environments to validate, e.g. base dev prod")
    total, problems = validate(args.root, args.envs, args.kubectl, args.dockerfile)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        print(f"k8s: {len(problems)} problem(s) in {', '.join(args.envs)}", file=sys.stderr)
        return 1
    print(f"k8s: {total} documents validated in {', '.join(args.envs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
