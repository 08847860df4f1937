"""Checks on rendered manifests: structure, cross references, and the service contract.

check_environment(docs, contract, env) returns a list of problems (strings); empty means the
rendered environment is valid. `contract` is expectations.yaml without `environments`,
`env` one entry of `environments`.
"""

from __future__ import annotations

import base64
import binascii
import re

from kustomize_lite import CLUSTER_SCOPED_KINDS, WORKLOAD_KINDS, all_containers, pod_specs

# --------------------------------------------------------------------------- field schema
# Allowed fields per object type, for the kinds these manifests use. A field outside the
# list is reported, which catches misspelt or misplaced keys that Kubernetes would reject
# (or, worse, silently drop with client-side apply).

S = None  # scalar
MAP = "map"  # free-form map of strings
ANY = "any"


def L(t):
    return ("list", t)


SCHEMA = {
    "ObjectMeta": {"name": S, "generateName": S, "namespace": S, "labels": MAP,
                   "annotations": MAP, "finalizers": L(S), "ownerReferences": L(ANY)},
    "LabelSelector": {"matchLabels": MAP, "matchExpressions": L("LabelSelectorRequirement")},
    "LabelSelectorRequirement": {"key": S, "operator": S, "values": L(S)},
    "StatefulSet": {"apiVersion": S, "kind": S, "metadata": "ObjectMeta",
                    "spec": "StatefulSetSpec"},
    "StatefulSetSpec": {"replicas": S, "selector": "LabelSelector",
                        "template": "PodTemplateSpec", "volumeClaimTemplates": L("PVC"),
                        "serviceName": S, "podManagementPolicy": S,
                        "updateStrategy": "StatefulSetUpdateStrategy",
                        "revisionHistoryLimit": S, "minReadySeconds": S,
                        "persistentVolumeClaimRetentionPolicy": MAP, "ordinals": MAP},
    "StatefulSetUpdateStrategy": {"type": S, "rollingUpdate": MAP},
    "PVC": {"apiVersion": S, "kind": S, "metadata": "ObjectMeta", "spec": "PVCSpec"},
    "PVCSpec": {"accessModes": L(S), "selector": "LabelSelector",
                "resources": "Resources", "volumeName": S, "storageClassName": S,
                "volumeMode": S, "dataSource": ANY, "dataSourceRef": ANY,
                "volumeAttributesClassName": S},
    "PodTemplateSpec": {"metadata": "ObjectMeta", "spec": "PodSpec"},
    "PodSpec": {"volumes": L("Volume"), "initContainers": L("Container"),
                "containers": L("Container"), "ephemeralContainers": L(ANY),
                "restartPolicy": S, "terminationGracePeriodSeconds": S,
                "activeDeadlineSeconds": S, "dnsPolicy": S, "nodeSelector": MAP,
                "serviceAccountName": S, "serviceAccount": S,
                "automountServiceAccountToken": S, "nodeName": S, "hostNetwork": S,
                "hostPID": S, "hostIPC": S, "shareProcessNamespace": S,
                "securityContext": "PodSecurityContext", "imagePullSecrets": L(MAP),
                "hostname": S, "subdomain": S, "affinity": ANY, "schedulerName": S,
                "tolerations": L(ANY), "hostAliases": L(ANY), "priorityClassName": S,
                "priority": S, "dnsConfig": ANY, "readinessGates": L(ANY),
                "runtimeClassName": S, "enableServiceLinks": S, "preemptionPolicy": S,
                "overhead": MAP, "topologySpreadConstraints": L("TopologySpreadConstraint"),
                "setHostnameAsFQDN": S, "os": MAP, "hostUsers": S,
                "schedulingGates": L(ANY), "resourceClaims": L(ANY), "resources": ANY},
    "TopologySpreadConstraint": {"maxSkew": S, "topologyKey": S, "whenUnsatisfiable": S,
                                 "labelSelector": "LabelSelector", "minDomains": S,
                                 "nodeAffinityPolicy": S, "nodeTaintsPolicy": S,
                                 "matchLabelKeys": L(S)},
    "Container": {"name": S, "image": S, "command": L(S), "args": L(S), "workingDir": S,
                  "ports": L("ContainerPort"), "envFrom": L("EnvFromSource"),
                  "env": L("EnvVar"), "resources": "Resources", "resizePolicy": L(ANY),
                  "restartPolicy": S, "volumeMounts": L("VolumeMount"),
                  "volumeDevices": L(ANY), "livenessProbe": "Probe",
                  "readinessProbe": "Probe", "startupProbe": "Probe", "lifecycle": ANY,
                  "terminationMessagePath": S, "terminationMessagePolicy": S,
                  "imagePullPolicy": S, "securityContext": "SecurityContext", "stdin": S,
                  "stdinOnce": S, "tty": S},
    "ContainerPort": {"name": S, "containerPort": S, "hostPort": S, "hostIP": S,
                      "protocol": S},
    "EnvVar": {"name": S, "value": S, "valueFrom": "EnvVarSource"},
    "EnvVarSource": {"fieldRef": MAP, "resourceFieldRef": ANY,
                     "configMapKeyRef": "KeyRef", "secretKeyRef": "KeyRef"},
    "KeyRef": {"name": S, "key": S, "optional": S},
    "EnvFromSource": {"prefix": S, "configMapRef": "NameRef", "secretRef": "NameRef"},
    "NameRef": {"name": S, "optional": S},
    "Resources": {"limits": MAP, "requests": MAP, "claims": L(ANY)},
    "Probe": {"exec": ANY, "httpGet": ANY, "tcpSocket": ANY, "grpc": "GRPCAction",
              "initialDelaySeconds": S, "timeoutSeconds": S, "periodSeconds": S,
              "successThreshold": S, "failureThreshold": S,
              "terminationGracePeriodSeconds": S},
    "GRPCAction": {"port": S, "service": S},
    "SecurityContext": {"capabilities": "Capabilities", "privileged": S,
                        "seLinuxOptions": MAP, "windowsOptions": MAP, "runAsUser": S,
                        "runAsGroup": S, "runAsNonRoot": S, "readOnlyRootFilesystem": S,
                        "allowPrivilegeEscalation": S, "procMount": S,
                        "seccompProfile": "SeccompProfile", "appArmorProfile": MAP},
    "PodSecurityContext": {"seLinuxOptions": MAP, "windowsOptions": MAP, "runAsUser": S,
                           "runAsGroup": S, "runAsNonRoot": S, "supplementalGroups": L(S),
                           "supplementalGroupsPolicy": S, "fsGroup": S, "sysctls": L(MAP),
                           "fsGroupChangePolicy": S, "seccompProfile": "SeccompProfile",
                           "appArmorProfile": MAP, "seLinuxChangePolicy": S},
    "Capabilities": {"add": L(S), "drop": L(S)},
    "SeccompProfile": {"type": S, "localhostProfile": S},
    "VolumeMount": {"name": S, "readOnly": S, "recursiveReadOnly": S, "mountPath": S,
                    "subPath": S, "mountPropagation": S, "subPathExpr": S},
    "Volume": {"name": S, "emptyDir": MAP, "configMap": ANY, "secret": ANY,
               "persistentVolumeClaim": MAP, "projected": "ProjectedVolume", "downwardAPI": ANY,
               "ephemeral": ANY, "csi": ANY, "hostPath": ANY, "image": ANY, "nfs": ANY},
    "ProjectedVolume": {"sources": L("VolumeProjection"), "defaultMode": S},
    "VolumeProjection": {"configMap": "ProjectionSource", "secret": "ProjectionSource",
                         "downwardAPI": ANY, "serviceAccountToken": ANY,
                         "clusterTrustBundle": ANY},
    "ProjectionSource": {"name": S, "items": L("KeyToPath"), "optional": S},
    "KeyToPath": {"key": S, "path": S, "mode": S},
    "Service": {"apiVersion": S, "kind": S, "metadata": "ObjectMeta", "spec": "ServiceSpec"},
    "ServiceSpec": {"ports": L("ServicePort"), "selector": MAP, "clusterIP": S,
                    "clusterIPs": L(S), "type": S, "externalIPs": L(S),
                    "sessionAffinity": S, "loadBalancerIP": S,
                    "loadBalancerSourceRanges": L(S), "externalName": S,
                    "externalTrafficPolicy": S, "healthCheckNodePort": S,
                    "publishNotReadyAddresses": S, "sessionAffinityConfig": ANY,
                    "ipFamilies": L(S), "ipFamilyPolicy": S,
                    "allocateLoadBalancerNodePorts": S, "loadBalancerClass": S,
                    "internalTrafficPolicy": S, "trafficDistribution": S},
    "ServicePort": {"name": S, "protocol": S, "appProtocol": S, "port": S,
                    "targetPort": S, "nodePort": S},
    "ConfigMap": {"apiVersion": S, "kind": S, "metadata": "ObjectMeta", "data": MAP,
                  "binaryData": MAP, "immutable": S},
    "Secret": {"apiVersion": S, "kind": S, "metadata": "ObjectMeta", "data": MAP,
               "stringData": MAP, "type": S, "immutable": S},
    "PodDisruptionBudget": {"apiVersion": S, "kind": S, "metadata": "ObjectMeta",
                            "spec": "PDBSpec"},
    "PDBSpec": {"minAvailable": S, "maxUnavailable": S, "selector": "LabelSelector",
                "unhealthyPodEvictionPolicy": S},
    "NetworkPolicy": {"apiVersion": S, "kind": S, "metadata": "ObjectMeta",
                      "spec": "NetworkPolicySpec"},
    "NetworkPolicySpec": {"podSelector": "LabelSelector",
                          "ingress": L("NetworkPolicyIngressRule"),
                          "egress": L("NetworkPolicyEgressRule"), "policyTypes": L(S)},
    "NetworkPolicyIngressRule": {"from": L("NetworkPolicyPeer"),
                                 "ports": L("NetworkPolicyPort")},
    "NetworkPolicyEgressRule": {"to": L("NetworkPolicyPeer"),
                                "ports": L("NetworkPolicyPort")},
    "NetworkPolicyPeer": {"podSelector": "LabelSelector",
                          "namespaceSelector": "LabelSelector", "ipBlock": MAP},
    "NetworkPolicyPort": {"port": S, "endPort": S, "protocol": S},
    "Namespace": {"apiVersion": S, "kind": S, "metadata": "ObjectMeta", "spec": MAP},
    "KafkaTopic": {"apiVersion": S, "kind": S, "metadata": "ObjectMeta",
                   "spec": "KafkaTopicSpec"},
    "KafkaTopicSpec": {"topicName": S, "partitions": S, "replicas": S, "config": ANY},
    "KafkaUser": {"apiVersion": S, "kind": S, "metadata": "ObjectMeta",
                  "spec": "KafkaUserSpec"},
    "KafkaUserSpec": {"authentication": "KafkaUserAuthentication",
                      "authorization": "KafkaUserAuthorization", "quotas": MAP,
                      "template": ANY},
    "KafkaUserAuthentication": {"type": S, "password": ANY},
    "KafkaUserAuthorization": {"type": S, "acls": L("AclRule")},
    "AclRule": {"resource": "AclRuleResource", "operations": L(S), "operation": S,
                "host": S, "type": S},
    "AclRuleResource": {"type": S, "name": S, "patternType": S},
}

API_VERSIONS = {
    "StatefulSet": "apps/v1", "Service": "v1", "ConfigMap": "v1", "Secret": "v1",
    "PodDisruptionBudget": "policy/v1", "NetworkPolicy": "networking.k8s.io/v1",
    "Namespace": "v1", "KafkaTopic": "kafka.strimzi.io/v1beta2",
    "KafkaUser": "kafka.strimzi.io/v1beta2",
}

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_KEY_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def _schema(obj, tname, path, errs):
    if tname is S:
        if isinstance(obj, (dict, list)):
            errs.append(f"{path}: expected a scalar")
        return
    if tname == ANY:
        return
    if tname == MAP:
        if not isinstance(obj, dict):
            errs.append(f"{path}: expected a mapping")
            return
        for k, v in obj.items():
            if isinstance(v, (dict, list)):
                errs.append(f"{path}.{k}: expected a scalar value")
        return
    if isinstance(tname, tuple):
        if not isinstance(obj, list):
            errs.append(f"{path}: expected a list")
            return
        for i, item in enumerate(obj):
            _schema(item, tname[1], f"{path}[{i}]", errs)
        return
    fields = SCHEMA[tname]
    if not isinstance(obj, dict):
        errs.append(f"{path}: expected a mapping ({tname})")
        return
    for k, v in obj.items():
        if k not in fields:
            errs.append(f"{path}: unknown field {k!r} in {tname}")
        elif v is not None:
            _schema(v, fields[k], f"{path}.{k}", errs)


# --------------------------------------------------------------------------- helpers

def ident(doc):
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind')}/{meta.get('name')}"


def labels_of(doc):
    return (doc.get("metadata") or {}).get("labels") or {}


def pod_labels(doc):
    return (((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}) \
        .get("labels") or {}


def selector_matches(selector, labels):
    """A LabelSelector (matchLabels and matchExpressions) against a label set."""
    if not isinstance(selector, dict):
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def selector_empty(selector):
    return not isinstance(selector, dict) or \
        (not selector.get("matchLabels") and not selector.get("matchExpressions"))


_QTY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_MULT = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
         "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50,
         "Ei": 2 ** 60}


def quantity(value):
    m = _QTY.match(str(value))
    if not m:
        raise ValueError(f"not a quantity: {value!r}")
    return float(m.group(1)) * _MULT[m.group(2)]


def host_port(value):
    m = re.match(r"^(.+):([0-9]{1,5})$", str(value))
    if not m:
        return None, None
    return m.group(1), int(m.group(2))


# --------------------------------------------------------------------------- checks

def check_documents(docs, env, errs):
    seen = set()
    ns = env.get("namespace")
    for i, doc in enumerate(docs):
        where = f"document {i}"
        if not isinstance(doc, dict):
            errs.append(f"{where}: not a mapping")
            continue
        for f in ("apiVersion", "kind"):
            if not isinstance(doc.get(f), str) or not doc.get(f):
                errs.append(f"{where}: missing {f}")
        meta = doc.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        if not isinstance(name, str) or not name:
            errs.append(f"{where} ({doc.get('kind')}): missing metadata.name")
            continue
        where = ident(doc)
        kind = doc.get("kind")
        if kind in SCHEMA:
            _schema(doc, kind, where, errs)
        else:
            errs.append(f"{where}: kind {kind} is not known to the validator "
                        f"(add it to checks.SCHEMA)")
        if kind in API_VERSIONS and doc.get("apiVersion") != API_VERSIONS[kind]:
            errs.append(f"{where}: apiVersion {doc.get('apiVersion')} "
                        f"(expected {API_VERSIONS[kind]})")
        if len(name) > 253 or not DNS_SUBDOMAIN.match(name):
            errs.append(f"{where}: name is not a valid DNS subdomain")
        if kind in ("Service", "Namespace") and (len(name) > 63 or not DNS_LABEL.match(name)):
            errs.append(f"{where}: name is not a valid DNS-1035 label")
        if kind == "StatefulSet" and len(name) > 52:
            errs.append(f"{where}: StatefulSet names longer than 52 characters break "
                        f"the controller-revision-hash label")
        for k, v in labels_of(doc).items():
            if not isinstance(v, str) or len(v) > 63 or not LABEL_VALUE.match(v):
                errs.append(f"{where}: label {k}={v!r} has an invalid value")
            if not LABEL_KEY_NAME.match(k.split("/")[-1]) or len(k.split("/")[-1]) > 63:
                errs.append(f"{where}: label key {k!r} is invalid")
        for k, v in ((meta or {}).get("annotations") or {}).items():
            if not isinstance(v, str):
                errs.append(f"{where}: annotation {k} must be a string")
        key = (kind, (meta or {}).get("namespace"), name)
        if key in seen:
            errs.append(f"{where}: duplicate resource")
        seen.add(key)
        if ns is not None and kind not in CLUSTER_SCOPED_KINDS and \
                (meta or {}).get("namespace") != ns:
            errs.append(f"{where}: namespace {(meta or {}).get('namespace')!r} "
                        f"(expected {ns!r})")
        if ns is None and (meta or {}).get("namespace"):
            errs.append(f"{where}: the base must not set a namespace")
        if kind == "Namespace":
            lab = labels_of(doc)
            if lab.get("pod-security.kubernetes.io/enforce") != "restricted":
                errs.append(f"{where}: pod-security.kubernetes.io/enforce must be restricted")


def check_common_labels(docs, contract, errs):
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") == "Namespace":
            continue
        for k, v in (contract.get("commonLabels") or {}).items():
            if labels_of(doc).get(k) != v:
                errs.append(f"{ident(doc)}: common label {k}={v} missing")
        if doc.get("kind") in WORKLOAD_KINDS:
            for k, v in (contract.get("commonLabels") or {}).items():
                if pod_labels(doc).get(k) != v:
                    errs.append(f"{ident(doc)}: pod template lacks common label {k}={v}")


class Index:
    def __init__(self, docs):
        self.docs = [d for d in docs if isinstance(d, dict)]

    def of(self, kind):
        return [d for d in self.docs if d.get("kind") == kind]

    def get(self, kind, name):
        for d in self.of(kind):
            if (d.get("metadata") or {}).get("name") == name:
                return d
        return None

    def workloads(self):
        return [d for d in self.docs if d.get("kind") in WORKLOAD_KINDS]


def _container_ports(workload):
    ports = []
    for ps in pod_specs(workload):
        for c in all_containers(ps):
            ports.extend(c.get("ports") or [])
    return ports


def _port_resolves(port, workload):
    for p in _container_ports(workload):
        if port == p.get("name") or port == p.get("containerPort"):
            return True
    return False


def strimzi_secrets(idx, contract):
    """Secrets Strimzi's operators write into the namespace, never rendered here: the cluster
    CA certificate and one per KafkaUser (named after it)."""
    names = {f"{contract['kafka']['cluster']}-cluster-ca-cert"}
    names.update((u.get("metadata") or {}).get("name") for u in idx.of("KafkaUser"))
    return names


def _volume_sources(volume):
    """(kind, name, items, optional) of each ConfigMap or Secret a volume takes files from."""
    out = []
    if volume.get("configMap"):
        ref = volume["configMap"]
        out.append(("ConfigMap", ref.get("name"), ref.get("items"), ref.get("optional")))
    if volume.get("secret"):
        ref = volume["secret"]
        out.append(("Secret", ref.get("secretName"), ref.get("items"), ref.get("optional")))
    for src in (volume.get("projected") or {}).get("sources") or []:
        for kind, key in (("ConfigMap", "configMap"), ("Secret", "secret")):
            ref = src.get(key)
            if ref:
                out.append((kind, ref.get("name"), ref.get("items"), ref.get("optional")))
    return out


def check_references(idx, contract, env, errs):
    external = set() if env.get("secretInRender") else {contract["secret"]["name"]}
    external |= strimzi_secrets(idx, contract)
    workloads = idx.workloads()
    for w in workloads:
        where = ident(w)
        sel = (w.get("spec") or {}).get("selector")
        if selector_empty(sel):
            errs.append(f"{where}: empty spec.selector")
        elif not selector_matches(sel, pod_labels(w)):
            errs.append(f"{where}: spec.selector does not match the pod template labels")
        for ps in pod_specs(w):
            vols = {v.get("name") for v in ps.get("volumes") or []}
            vcts = {(t.get("metadata") or {}).get("name")
                    for t in (w.get("spec") or {}).get("volumeClaimTemplates") or []}
            for c in all_containers(ps):
                for m in c.get("volumeMounts") or []:
                    if m.get("name") not in vols | vcts:
                        errs.append(f"{where}: volumeMount {m.get('name')!r} has no volume")
                for ef in c.get("envFrom") or []:
                    for kind, ref in (("ConfigMap", ef.get("configMapRef")),
                                      ("Secret", ef.get("secretRef"))):
                        if ref and not ref.get("optional") and \
                                not idx.get(kind, ref.get("name")) and \
                                not (kind == "Secret" and ref.get("name") in external):
                            errs.append(f"{where}: envFrom {kind} {ref.get('name')!r} "
                                        f"does not exist")
                for e in c.get("env") or []:
                    vf = e.get("valueFrom") or {}
                    for kind, ref in (("ConfigMap", vf.get("configMapKeyRef")),
                                      ("Secret", vf.get("secretKeyRef"))):
                        if not ref or ref.get("optional"):
                            continue
                        target = idx.get(kind, ref.get("name"))
                        if target is None:
                            if not (kind == "Secret" and ref.get("name") in external):
                                errs.append(f"{where}: env {e.get('name')}: {kind} "
                                            f"{ref.get('name')!r} does not exist")
                            continue
                        keys = set((target.get("data") or {})) | \
                            set((target.get("stringData") or {}))
                        if ref.get("key") not in keys:
                            errs.append(f"{where}: env {e.get('name')}: {kind} "
                                        f"{ref.get('name')} has no key {ref.get('key')!r}")
            for v in ps.get("volumes") or []:
                for kind, name, items, optional in _volume_sources(v):
                    target = idx.get(kind, name)
                    if target is None:
                        if not optional and not (kind == "Secret" and name in external):
                            errs.append(f"{where}: volume {v.get('name')}: {kind} "
                                        f"{name!r} does not exist")
                        continue
                    keys = set((target.get("data") or {})) | \
                        set((target.get("stringData") or {}))
                    for item in items or []:
                        if item.get("key") not in keys and not optional:
                            errs.append(f"{where}: volume {v.get('name')}: {kind} {name} "
                                        f"has no key {item.get('key')!r}")
        if w.get("kind") == "StatefulSet":
            sname = (w.get("spec") or {}).get("serviceName")
            svc = idx.get("Service", sname)
            if svc is None:
                errs.append(f"{where}: serviceName {sname!r} is not a Service in the render")
            else:
                if (svc.get("spec") or {}).get("clusterIP") != "None":
                    errs.append(f"{where}: serviceName {sname} is not headless "
                                f"(clusterIP: None)")
                if not selector_matches({"matchLabels": (svc.get("spec") or {})
                                         .get("selector") or {}}, pod_labels(w)):
                    errs.append(f"{where}: headless Service {sname} does not select its pods")

    for svc in idx.of("Service"):
        where = ident(svc)
        spec = svc.get("spec") or {}
        sel = spec.get("selector") or {}
        if not sel:
            errs.append(f"{where}: no selector")
            continue
        matched = [w for w in workloads
                   if selector_matches({"matchLabels": sel}, pod_labels(w))]
        if not matched:
            errs.append(f"{where}: selector {sel} matches no pods")
            continue
        if len({w.get("metadata", {}).get("name") for w in matched}) > 1:
            errs.append(f"{where}: selector matches pods of several workloads")
        if not spec.get("ports"):
            errs.append(f"{where}: no ports")
        for p in spec.get("ports") or []:
            tp = p.get("targetPort", p.get("port"))
            if not all(_port_resolves(tp, w) for w in matched):
                errs.append(f"{where}: port {p.get('name')}: targetPort {tp!r} is not a "
                            f"container port of the selected pods")

    for pdb in idx.of("PodDisruptionBudget"):
        where = ident(pdb)
        spec = pdb.get("spec") or {}
        sel = spec.get("selector")
        matched = [w for w in workloads if not selector_empty(sel)
                   and selector_matches(sel, pod_labels(w))]
        if not matched:
            errs.append(f"{where}: selector matches no pods")
        if ("minAvailable" in spec) == ("maxUnavailable" in spec):
            errs.append(f"{where}: set exactly one of minAvailable and maxUnavailable")
        for w in matched:
            replicas = (w.get("spec") or {}).get("replicas", 1)
            if "minAvailable" in spec and isinstance(spec["minAvailable"], int) and \
                    spec["minAvailable"] >= replicas:
                errs.append(f"{where}: minAvailable {spec['minAvailable']} >= replicas "
                            f"{replicas} of {ident(w)}: no pod could ever be evicted")
            if spec.get("maxUnavailable") in (0, "0%"):
                errs.append(f"{where}: maxUnavailable 0: no pod could ever be evicted")

    for np in idx.of("NetworkPolicy"):
        sel = (np.get("spec") or {}).get("podSelector")
        if selector_empty(sel) or not any(selector_matches(sel, pod_labels(w))
                                          for w in workloads):
            errs.append(f"{ident(np)}: podSelector matches no pods")

    for sec in idx.of("Secret"):
        for k, v in (sec.get("data") or {}).items():
            try:
                # kubectl wraps long values over lines.
                base64.b64decode("".join(str(v).split()), validate=True)
            except (binascii.Error, ValueError):
                errs.append(f"{ident(sec)}: data.{k} is not valid base64")


def _env_map(container, idx):
    """Effective environment: name -> ('value', v) | ('configMap', name, key) |
    ('secret', name, key)."""
    env = {}
    for ef in container.get("envFrom") or []:
        ref = ef.get("configMapRef")
        if ref:
            cm = idx.get("ConfigMap", ref.get("name"))
            for k, v in ((cm or {}).get("data") or {}).items():
                env[(ef.get("prefix") or "") + k] = ("value", v)
    for e in container.get("env") or []:
        vf = e.get("valueFrom") or {}
        if "value" in e:
            env[e["name"]] = ("value", e["value"])
        elif vf.get("secretKeyRef"):
            env[e["name"]] = ("secret", vf["secretKeyRef"].get("name"),
                              vf["secretKeyRef"].get("key"))
        elif vf.get("configMapKeyRef"):
            ref = vf["configMapKeyRef"]
            cm = idx.get("ConfigMap", ref.get("name"))
            env[e["name"]] = ("value", ((cm or {}).get("data") or {}).get(ref.get("key")))
        else:
            env[e["name"]] = ("other",)
    return env


def _check_probe(where, name, probe, port, errs, required=True, service=""):
    if not probe:
        if required:
            errs.append(f"{where}: {name} missing")
        return
    handlers = [h for h in ("grpc", "httpGet", "tcpSocket", "exec") if h in probe]
    if handlers != ["grpc"]:
        errs.append(f"{where}: {name} must use the native grpc handler (has {handlers})")
        return
    if probe["grpc"].get("port") != port:
        errs.append(f"{where}: {name} grpc port {probe['grpc'].get('port')} "
                    f"(expected {port})")
    # A gated service name on liveness would restart a pod that is
    # rebuilding; none on readiness would route queries to it.
    if probe["grpc"].get("service", "") != service:
        errs.append(f"{where}: {name} grpc service {probe['grpc'].get('service', '')!r} "
                    f"(expected {service!r})")


def check_service_contract(idx, contract, env, errs):
    metrics = contract["metricsPort"]
    uid = contract["uid"]
    sibling_labels = []
    for svc in contract["services"]:
        name, port = svc["name"], svc["grpcPort"]
        sts = idx.get("StatefulSet", name)
        if sts is None:
            errs.append(f"StatefulSet/{name}: missing")
            continue
        sibling_labels.append(pod_labels(sts))
        where = ident(sts)
        spec = sts.get("spec") or {}
        want = (env.get("replicas") or {}).get(name)
        if want is not None and spec.get("replicas") != want:
            errs.append(f"{where}: replicas {spec.get('replicas')} (expected {want})")
        ps = (pod_specs(sts) or [{}])[0]
        containers = ps.get("containers") or []
        if len(containers) != 1 or containers[0].get("name") != contract["container"]:
            errs.append(f"{where}: expected exactly one container named "
                        f"{contract['container']!r}")
            continue
        c = containers[0]
        cwhere = f"{where} container {c.get('name')}"

        image = c.get("image") or ""
        if not image:
            errs.append(f"{cwhere}: no image")
        if env.get("imageTagRequired"):
            last = image.rsplit("/", 1)[-1]
            if "@" not in image and (":" not in last or last.endswith(":latest")):
                errs.append(f"{cwhere}: image {image!r} needs a pinned tag (not latest)")
        if c.get("command"):
            errs.append(f"{cwhere}: set args, not command (command bypasses the image's "
                        f"init ENTRYPOINT)")
        args = c.get("args") or []
        if not args or args[0] != svc["binary"]:
            errs.append(f"{cwhere}: args[0] must be {svc['binary']} (has {args[:1]})")

        ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
        if ports.get("grpc") != port:
            errs.append(f"{cwhere}: container port 'grpc' must be {port}")
        if ports.get("metrics") != metrics:
            errs.append(f"{cwhere}: container port 'metrics' must be {metrics}")

        envs = _env_map(c, idx)
        for var in contract["configEnv"]:
            if var not in envs or envs[var][0] != "value" or envs[var][1] in (None, ""):
                errs.append(f"{cwhere}: environment variable {var} not set from the ConfigMap")
        host, lport = host_port((envs.get("CRM_LISTEN") or ("", ""))[-1])
        if lport != port:
            errs.append(f"{cwhere}: CRM_LISTEN must listen on port {port}")
        host, mport = host_port((envs.get("CRM_METRICS_LISTEN") or ("", ""))[-1])
        if mport != metrics:
            errs.append(f"{cwhere}: CRM_METRICS_LISTEN must listen on port {metrics}")
        brokers = str((envs.get("CRM_KAFKA_BROKERS") or ("", ""))[-1])
        if brokers != contract["kafka"]["bootstrap"]:
            errs.append(f"{cwhere}: CRM_KAFKA_BROKERS {brokers!r} "
                        f"(expected {contract['kafka']['bootstrap']})")
        for var, key in contract["secret"]["env"].items():
            got = envs.get(var)
            if got != ("secret", contract["secret"]["name"], key):
                errs.append(f"{cwhere}: {var} must come from Secret "
                            f"{contract['secret']['name']} key {key} (has {got})")
        for var, val in envs.items():
            if re.search(r"(KEY|SECRET|PASSWORD|TOKEN)$", var) and val[0] == "value":
                errs.append(f"{cwhere}: {var} is set in clear text; use a secretKeyRef")

        _check_probe(cwhere, "readinessProbe", c.get("readinessProbe"), port, errs,
                     service=svc.get("readinessService", ""))
        # Clients dial the headless Service for round robin: one that lists
        # not-ready pods would route queries to a pod its readiness gates.
        headless = idx.get("Service", (sts.get("spec") or {}).get("serviceName"))
        if svc.get("readinessService") and headless is not None and \
                (headless.get("spec") or {}).get("publishNotReadyAddresses"):
            errs.append(f"{ident(headless)}: publishNotReadyAddresses would send queries to "
                        f"pods gated by readiness ({svc['readinessService']})")
        _check_probe(cwhere, "livenessProbe", c.get("livenessProbe"), port, errs)
        _check_probe(cwhere, "startupProbe", c.get("startupProbe"), port, errs, False)

        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(kind) or {}):
                    errs.append(f"{cwhere}: resources.{kind}.{r} missing")
        for r in ("cpu", "memory"):
            try:
                if quantity(res["requests"][r]) > quantity(res["limits"][r]):
                    errs.append(f"{cwhere}: {r} request is above its limit")
            except KeyError:
                pass
            except ValueError as e:
                errs.append(f"{cwhere}: {e}")

        psc = ps.get("securityContext") or {}
        if psc.get("runAsNonRoot") is not True:
            errs.append(f"{where}: pod securityContext.runAsNonRoot must be true")
        if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            errs.append(f"{where}: pod seccompProfile must be RuntimeDefault")
        if psc.get("runAsUser") != uid or psc.get("fsGroup") != uid:
            errs.append(f"{where}: pod runAsUser and fsGroup must be {uid} "
                        f"(the image's user, and the owner of the data volume)")
        for f in ("hostNetwork", "hostPID", "hostIPC"):
            if ps.get(f):
                errs.append(f"{where}: {f} must not be set")
        if ps.get("enableServiceLinks") is not False:
            errs.append(f"{where}: enableServiceLinks must be false (service links inject "
                        f"CRM_* variables)")
        if ps.get("automountServiceAccountToken") is not False:
            errs.append(f"{where}: automountServiceAccountToken must be false")

        sc = c.get("securityContext") or {}
        if sc.get("readOnlyRootFilesystem") is not True:
            errs.append(f"{cwhere}: readOnlyRootFilesystem must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            errs.append(f"{cwhere}: allowPrivilegeEscalation must be false")
        if sc.get("privileged"):
            errs.append(f"{cwhere}: must not be privileged")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            errs.append(f"{cwhere}: capabilities.drop must contain ALL")
        if caps.get("add"):
            errs.append(f"{cwhere}: capabilities.add must be empty")
        if sc.get("runAsUser") == 0 or sc.get("runAsNonRoot") is False:
            errs.append(f"{cwhere}: must not run as root")
        if "seccompProfile" in sc and sc["seccompProfile"].get("type") != "RuntimeDefault":
            errs.append(f"{cwhere}: seccompProfile must be RuntimeDefault")

        mounts = {m.get("mountPath"): m.get("name") for m in c.get("volumeMounts") or []}
        vcts = spec.get("volumeClaimTemplates") or []
        vct_names = [(t.get("metadata") or {}).get("name") for t in vcts]
        if not vcts:
            errs.append(f"{where}: no volumeClaimTemplates (RocksDB needs a PVC)")
        data_dir = (envs.get("CRM_DATA_DIR") or ("", ""))[-1]
        if data_dir != contract["dataDir"]:
            errs.append(f"{cwhere}: CRM_DATA_DIR must be {contract['dataDir']}")
        if mounts.get(data_dir) not in vct_names:
            errs.append(f"{cwhere}: CRM_DATA_DIR {data_dir!r} is not a mounted "
                        f"volumeClaimTemplate")
        # Backups go where the read-only root filesystem is not, and not onto
        # the volume they are meant to survive.
        backup_dir = (envs.get("CRM_BACKUP_DIR") or ("", ""))[-1]
        if backup_dir != contract["backupDir"]:
            errs.append(f"{cwhere}: CRM_BACKUP_DIR must be {contract['backupDir']}")
        elif mounts.get(backup_dir) not in vct_names or \
                mounts.get(backup_dir) == mounts.get(data_dir):
            errs.append(f"{cwhere}: CRM_BACKUP_DIR {backup_dir!r} is not a volumeClaimTemplate "
                        f"of its own")
        for t in vcts:
            tspec = t.get("spec") or {}
            if not tspec.get("accessModes"):
                errs.append(f"{where}: volumeClaimTemplate {t['metadata'].get('name')}: "
                            f"no accessModes")
            storage = ((tspec.get("resources") or {}).get("requests") or {}).get("storage")
            if not storage:
                errs.append(f"{where}: volumeClaimTemplate has no storage request")
            elif env.get("storage") and storage != env["storage"]:
                errs.append(f"{where}: volume size {storage} (expected {env['storage']})")
        vols = {v.get("name"): v for v in ps.get("volumes") or []}
        tmp = vols.get(mounts.get("/tmp"))
        if tmp is None or "emptyDir" not in tmp:
            errs.append(f"{cwhere}: /tmp must be a writable emptyDir")

        # Services: headless via serviceName, plus a ClusterIP Service named like the set
        svc_obj = idx.get("Service", name)
        if svc_obj is None:
            errs.append(f"Service/{name}: missing (ClusterIP Service of {name})")
        else:
            sspec = svc_obj.get("spec") or {}
            if sspec.get("clusterIP") == "None" or sspec.get("type", "ClusterIP") != "ClusterIP":
                errs.append(f"Service/{name}: must be type ClusterIP")
            grpc_ports = [p for p in sspec.get("ports") or [] if p.get("name") == "grpc"]
            if not grpc_ports or grpc_ports[0].get("port") != port:
                errs.append(f"Service/{name}: port 'grpc' must be {port}")
        if not any(selector_matches((p.get("spec") or {}).get("selector"), pod_labels(sts))
                   for p in idx.of("PodDisruptionBudget")):
            errs.append(f"{where}: no PodDisruptionBudget selects its pods")

    # NetworkPolicy per service: gateways + siblings on gRPC, monitoring on metrics only
    for svc in contract["services"]:
        sts = idx.get("StatefulSet", svc["name"])
        if sts is None:
            continue
        pols = [p for p in idx.of("NetworkPolicy")
                if selector_matches((p.get("spec") or {}).get("podSelector"), pod_labels(sts))]
        where = ident(sts)
        if not pols:
            errs.append(f"{where}: no NetworkPolicy selects its pods")
            continue
        allowed_grpc = {"gateway": False, "siblings": False}
        monitoring = False
        for pol in pols:
            pwhere = ident(pol)
            pspec = pol.get("spec") or {}
            if "Ingress" not in (pspec.get("policyTypes") or []):
                errs.append(f"{pwhere}: policyTypes must include Ingress")
            for rule in pspec.get("ingress") or []:
                peers = rule.get("from") or []
                ports = rule.get("ports") or []
                if not peers:
                    errs.append(f"{pwhere}: an ingress rule without 'from' admits everyone")
                    continue
                if not ports:
                    errs.append(f"{pwhere}: an ingress rule without 'ports' opens all ports")
                    continue
                port_values = [p.get("port") for p in ports]
                for pv in port_values:
                    if not _port_resolves(pv, sts):
                        errs.append(f"{pwhere}: port {pv!r} is not a container port")
                opens_grpc = "grpc" in port_values or svc["grpcPort"] in port_values
                opens_metrics = "metrics" in port_values or metrics in port_values
                for peer in peers:
                    if "ipBlock" in peer:
                        errs.append(f"{pwhere}: ipBlock peers are not expected")
                        continue
                    nsel, psel = peer.get("namespaceSelector"), peer.get("podSelector")
                    if nsel is not None:
                        want = {"kubernetes.io/metadata.name": contract["monitoringNamespace"]}
                        if (nsel.get("matchLabels") or {}) != want or \
                                nsel.get("matchExpressions"):
                            errs.append(f"{pwhere}: namespaceSelector admits namespaces "
                                        f"other than {contract['monitoringNamespace']}")
                        elif psel is None and opens_grpc:
                            errs.append(f"{pwhere}: the monitoring namespace may reach "
                                        f"only the metrics port")
                        elif opens_metrics:
                            monitoring = True
                        continue
                    if selector_empty(psel):
                        errs.append(f"{pwhere}: an empty podSelector admits every pod of "
                                    f"the namespace")
                        continue
                    match = psel.get("matchLabels") or {}
                    gateway_like = match == contract["gatewayLabels"] and \
                        not psel.get("matchExpressions")
                    crm_like = match.get("app.kubernetes.io/part-of") == \
                        contract["commonLabels"]["app.kubernetes.io/part-of"] and \
                        all(selector_matches(psel, lab) for lab in sibling_labels)
                    if gateway_like and opens_grpc:
                        allowed_grpc["gateway"] = True
                    elif crm_like and opens_grpc:
                        allowed_grpc["siblings"] = True
                    else:
                        errs.append(f"{pwhere}: peer {psel} is neither the gateways nor "
                                    f"the CRM services")
        if not allowed_grpc["gateway"]:
            errs.append(f"{where}: NetworkPolicy does not admit gateway pods on gRPC")
        if not allowed_grpc["siblings"]:
            errs.append(f"{where}: NetworkPolicy does not admit sibling CRM services on gRPC")
        if not monitoring:
            errs.append(f"{where}: NetworkPolicy does not admit the monitoring namespace "
                        f"on the metrics port")


def check_kafka(idx, contract, env, errs):
    k = contract["kafka"]
    if k["bootstrap"].split(":")[0] != f"{k['cluster']}-kafka-bootstrap":
        errs.append(f"kafka: bootstrap {k['bootstrap']} is not the bootstrap Service of "
                    f"the Strimzi cluster {k['cluster']}")
    found = {}
    for t in idx.of("KafkaTopic"):
        where = ident(t)
        spec = t.get("spec") or {}
        topic = spec.get("topicName") or t["metadata"]["name"]
        if topic in found:
            errs.append(f"{where}: topic {topic} declared twice")
        found[topic] = t
        if topic not in k["topics"]:
            errs.append(f"{where}: topic {topic} is not in the expected topic list")
        if labels_of(t).get("strimzi.io/cluster") != k["cluster"]:
            errs.append(f"{where}: label strimzi.io/cluster must be {k['cluster']}")
        if spec.get("partitions") != k["partitions"]:
            errs.append(f"{where}: partitions {spec.get('partitions')} "
                        f"(expected {k['partitions']})")
        if spec.get("replicas") != env["topicReplicas"]:
            errs.append(f"{where}: replicas {spec.get('replicas')} "
                        f"(expected {env['topicReplicas']})")
        cfg = spec.get("config") or {}
        if cfg.get("min.insync.replicas") != env["minInsyncReplicas"]:
            errs.append(f"{where}: min.insync.replicas {cfg.get('min.insync.replicas')} "
                        f"(expected {env['minInsyncReplicas']})")
        if isinstance(cfg.get("min.insync.replicas"), int) and \
                isinstance(spec.get("replicas"), int) and \
                cfg["min.insync.replicas"] > spec["replicas"]:
            errs.append(f"{where}: min.insync.replicas exceeds replicas: no write would "
                        f"ever succeed with acks=all")
        # Per-topic overrides, e.g. a compacted key topic.
        wanted = {**k["config"], **(k.get("topicConfig") or {}).get(topic, {})}
        for key, want in wanted.items():
            if cfg.get(key) != want:
                errs.append(f"{where}: config {key} {cfg.get(key)!r} (expected {want!r})")
    for topic in k["topics"]:
        if topic not in found:
            errs.append(f"KafkaTopic for {topic}: missing")


# --------------------------------------------------------------------------- Kafka access

# The keys a properties file may set (libs/common/kafka.cc, ParseKafkaConnectionProperties).
CONNECTION_KEY = re.compile(r"^(security\.protocol|enable\.ssl\.certificate\.verification|"
                            r"ssl\..+|sasl\..+)$")
# Properties that hold a secret: never in a ConfigMap.
SECRET_PROPERTY = re.compile(r"(password|secret|jaas)", re.I)


def parse_kafka_properties(text):
    """(key -> value, problems) of a librdkafka properties file, read as the services read it:
    "key=value" lines, blank lines and '#' comments; connection keys only."""
    props, errs = {}, []
    for n, line in enumerate(str(text).split("\n"), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq or not key:
            errs.append(f"line {n}: expected key=value")
            continue
        if not CONNECTION_KEY.match(key):
            errs.append(f"line {n}: {key} is not a connection setting (security.protocol, "
                        f"ssl.*, sasl.*); the service would refuse to start")
            continue
        props[key] = value.strip()
    return props, errs


def mounted_file(container, pod_spec, path):
    """Where the file at `path` in the container comes from, as (volumeMount, kind, name,
    key) of a ConfigMap or Secret (whole, by items, or projected), or None."""
    path = str(path)
    best, rel = None, None
    for m in container.get("volumeMounts") or []:
        mp = str(m.get("mountPath") or "").rstrip("/")
        if m.get("subPath"):
            if path == mp:
                best, rel = m, m["subPath"]
            continue
        if path.startswith(mp + "/") and (best is None or best.get("subPath") is None and
                                          len(mp) > len(str(best.get("mountPath")))):
            best, rel = m, path[len(mp) + 1:]
    if best is None:
        return None
    vols = {v.get("name"): v for v in pod_spec.get("volumes") or []}
    volume = vols.get(best.get("name"))
    if volume is None:
        return None
    for kind, name, items, _ in _volume_sources(volume):
        if items:
            for item in items:
                if item.get("path") == rel:
                    return best, kind, name, item.get("key")
        elif "/" not in rel:
            return best, kind, name, rel
    return None


def _object_value(obj, key):
    """A key's text in a rendered ConfigMap or Secret, or None."""
    if obj.get("kind") == "Secret":
        if key in (obj.get("stringData") or {}):
            return str(obj["stringData"][key])
        if key in (obj.get("data") or {}):
            return _b64("".join(str(obj["data"][key]).split())).decode("utf-8", "replace")
        return None
    value = (obj.get("data") or {}).get(key)
    return None if value is None else str(value)


def expected_acls(user):
    """(resource type, name, operation) a KafkaUser of expectations' kafka.users must grant:
    Write and Describe on the topics it writes, Read and Describe on those it reads, Read on
    its consumer groups, IdempotentWrite on the cluster for idempotent producers."""
    acls = set()
    for t in user.get("write") or []:
        acls |= {("topic", t, "Write"), ("topic", t, "Describe")}
    for t in user.get("read") or []:
        acls |= {("topic", t, "Read"), ("topic", t, "Describe")}
    for g in user.get("groups") or []:
        acls.add(("group", g, "Read"))
    if user.get("idempotentWrite"):
        acls.add(("cluster", "kafka-cluster", "IdempotentWrite"))
    return acls


def check_kafka_users(idx, contract, env, errs):
    k = contract["kafka"]
    users = k.get("users") or {}
    client = k.get("client") or {}
    found = set()
    for u in idx.of("KafkaUser"):
        name = (u.get("metadata") or {}).get("name")
        where = ident(u)
        found.add(name)
        if name not in users:
            errs.append(f"{where}: not an expected Kafka user (expectations: kafka.users)")
            continue
        if labels_of(u).get("strimzi.io/cluster") != k["cluster"]:
            errs.append(f"{where}: label strimzi.io/cluster must be {k['cluster']}")
        spec = u.get("spec") or {}
        auth = (spec.get("authentication") or {}).get("type")
        if auth != client.get("authentication"):
            errs.append(f"{where}: authentication {auth!r} "
                        f"(expected {client.get('authentication')!r})")
        authz = spec.get("authorization") or {}
        if authz.get("type") != "simple":
            errs.append(f"{where}: authorization type {authz.get('type')!r} (expected simple: "
                        f"the ACLs are what confines the user)")
        got = set()
        for i, rule in enumerate(authz.get("acls") or []):
            res = rule.get("resource") or {}
            rtype, rname = res.get("type"), res.get("name")
            if rule.get("type", "allow") != "allow":
                errs.append(f"{where}: acls[{i}]: only allow rules are expected")
                continue
            if rule.get("host", "*") != "*":
                errs.append(f"{where}: acls[{i}]: host {rule.get('host')!r} (expected '*')")
            if rtype != "cluster" and (res.get("patternType", "literal") != "literal" or
                                       rname == "*"):
                errs.append(f"{where}: acls[{i}]: {rtype} {rname!r} must be a literal name "
                            f"(a prefix or '*' grants more than the code uses)")
            ops = rule.get("operations") or ([rule["operation"]] if rule.get("operation")
                                             else [])
            if not ops:
                errs.append(f"{where}: acls[{i}]: no operations")
            for op in ops:
                got.add((rtype, "kafka-cluster" if rtype == "cluster" else rname, op))
        want = expected_acls(users[name])
        for rtype, rname, op in sorted(want - got, key=str):
            errs.append(f"{where}: lacks {op} on {rtype} {rname} (its code uses it)")
        for rtype, rname, op in sorted(got - want, key=str):
            errs.append(f"{where}: grants {op} on {rtype} {rname}, which its code does not use")
    for name in users:
        if name not in found:
            errs.append(f"KafkaUser/{name}: missing")


def check_kafka_clients(idx, contract, env, errs):
    """Each service's CRM_KAFKA_PROPERTIES_FILE: mounted read-only, connection keys only, the
    expected security.protocol, no secret in a ConfigMap, and for TLS client authentication
    the cluster CA and the certificate and key of the service's own KafkaUser."""
    k = contract["kafka"]
    client = k.get("client") or {}
    env_var = client.get("propertiesEnv")
    if not env_var:
        return
    ca_secret = f"{k['cluster']}-cluster-ca-cert"
    for svc in contract["services"]:
        sts = idx.get("StatefulSet", svc["name"])
        ps = (pod_specs(sts) or [{}])[0] if sts is not None else {}
        containers = [c for c in ps.get("containers") or []
                      if c.get("name") == contract["container"]]
        if not containers:
            continue  # reported by the service contract
        c = containers[0]
        where = f"{ident(sts)} container {c.get('name')}"
        path = (_env_map(c, idx).get(env_var) or ("", ""))[-1]
        if not path:
            continue  # reported by the service contract
        src = mounted_file(c, ps, path)
        if src is None:
            errs.append(f"{where}: {env_var} {path} is not a file of a mounted ConfigMap or "
                        f"Secret")
            continue
        mount, kind, name, key = src
        if not mount.get("readOnly"):
            errs.append(f"{where}: {env_var}: volume {mount.get('name')} must be mounted "
                        f"read-only")
        obj = idx.get(kind, name)
        text = _object_value(obj, key) if obj is not None else None
        if text is None:
            if obj is not None:
                errs.append(f"{where}: {env_var}: {kind} {name} has no key {key!r}")
            continue  # a Secret created outside the render: its content is not known here
        props, perrs = parse_kafka_properties(text)
        errs.extend(f"{where}: {env_var} ({kind} {name} key {key}) {e}" for e in perrs)
        if kind == "ConfigMap":
            for p in props:
                if SECRET_PROPERTY.search(p):
                    errs.append(f"{where}: {p} is in clear text in ConfigMap {name}; put the "
                                f"properties file in a Secret")
        proto = props.get("security.protocol", "plaintext").lower()
        if proto != client.get("securityProtocol"):
            errs.append(f"{where}: Kafka security.protocol {proto} "
                        f"(expected {client.get('securityProtocol')})")
        if props.get("enable.ssl.certificate.verification", "true").lower() in ("false", "0"):
            errs.append(f"{where}: enable.ssl.certificate.verification is off: any broker "
                        f"certificate would be taken")
        if props.get("ssl.endpoint.identification.algorithm", "https").lower() == "none":
            errs.append(f"{where}: ssl.endpoint.identification.algorithm none: the broker "
                        f"certificate's host name is not checked")
        if client.get("authentication") != "tls":
            continue
        wanted = {"ssl.ca.location": ("Secret", ca_secret, "ca.crt"),
                  "ssl.certificate.location": ("Secret", svc["name"], "user.crt"),
                  "ssl.key.location": ("Secret", svc["name"], "user.key")}
        for prop, want in wanted.items():
            loc = props.get(prop)
            if not loc:
                errs.append(f"{where}: the Kafka properties set no {prop}")
                continue
            f = mounted_file(c, ps, loc)
            if f is None:
                errs.append(f"{where}: {prop} {loc} is not a file of a mounted Secret")
                continue
            if not f[0].get("readOnly"):
                errs.append(f"{where}: {prop} {loc}: volume {f[0].get('name')} must be mounted "
                            f"read-only")
            if tuple(f[1:]) != want:
                errs.append(f"{where}: {prop} {loc} is {f[1]} {f[2]} key {f[3]} (expected "
                            f"{want[0]} {want[1]} key {want[2]}: "
                            + ("Strimzi's cluster CA)" if want[1] == ca_secret else
                               f"the User Operator's Secret of KafkaUser {want[1]})"))


def _b64(value):
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        return b""


def check_secrets(idx, contract, env, errs):
    name = contract["secret"]["name"]
    secrets = idx.of("Secret")
    if env.get("secretInRender"):
        sec = idx.get("Secret", name)
        if sec is None:
            errs.append(f"Secret/{name}: expected in this environment's render")
        else:
            for var, key in contract["secret"]["env"].items():
                value = (sec.get("data") or {}).get(key)
                if value is None:
                    errs.append(f"Secret/{name}: key {key} missing")
                elif var == "CRM_JWT_HS256_KEY" and len(_b64(value)) < 32:
                    errs.append(f"Secret/{name}: key {key} is shorter than 32 bytes "
                                f"(the services refuse such an HS256 key and do not start)")
    elif secrets:
        errs.append(f"{ident(secrets[0])}: this environment must not render Secrets "
                    f"(they are created outside the repository)")


def check_environment(docs, contract, env):
    errs = []
    check_documents(docs, env, errs)
    if errs:
        return errs
    idx = Index(docs)
    check_common_labels(docs, contract, errs)
    check_references(idx, contract, env, errs)
    check_service_contract(idx, contract, env, errs)
    check_kafka(idx, contract, env, errs)
    check_kafka_users(idx, contract, env, errs)
    check_kafka_clients(idx, contract, env, errs)
    check_secrets(idx, contract, env, errs)
    return errs
