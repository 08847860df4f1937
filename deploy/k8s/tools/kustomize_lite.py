"""A small, strict re-implementation of the kustomize subset these manifests use.

It renders a kustomization directory to a list of plain dicts, the same documents that
`kubectl kustomize` (kustomize v5) prints. It exists so the manifests can be rendered and
checked on machines without kubectl; where kubectl is present, validate.sh renders with both
and requires identical output.

Supported kustomization fields: resources (files and directories), namespace, namePrefix,
nameSuffix, labels (pairs, includeSelectors, includeTemplates), commonLabels,
commonAnnotations, patches (strategic merge or JSON 6902, inline or from a file, with or
without a target), replicas, images, configMapGenerator / secretGenerator (literals, files,
envs, options) and generatorOptions. Anything else is an error rather than being ignored.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re

import yaml


class KustomizeError(Exception):
    pass


SUPPORTED_FIELDS = {
    "apiVersion", "kind", "metadata", "resources", "namespace", "namePrefix", "nameSuffix",
    "labels", "commonLabels", "commonAnnotations", "patches", "replicas", "images",
    "configMapGenerator", "secretGenerator", "generatorOptions",
}

CLUSTER_SCOPED_KINDS = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass",
    "CustomResourceDefinition", "PriorityClass", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "APIService", "IngressClass", "RuntimeClass",
    "VolumeAttachment", "CSIDriver", "CSINode", "Node", "ClusterIssuer",
}

WORKLOAD_KINDS = {"Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job",
                  "ReplicationController"}
REPLICA_KINDS = {"Deployment", "ReplicaSet", "StatefulSet", "ReplicationController"}


# --------------------------------------------------------------------------- helpers

def _load_yaml_docs(path):
    with open(path, encoding="utf-8") as f:
        try:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            raise KustomizeError(f"{path}: invalid YAML: {e}") from e
    for d in docs:
        if not isinstance(d, dict):
            raise KustomizeError(f"{path}: a document is not a mapping")
    return docs


def _find_kustomization(directory):
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return p
    raise KustomizeError(f"{directory}: no kustomization.yaml")


def _group(api_version):
    return api_version.split("/")[0] if "/" in api_version else ""


def _version(api_version):
    return api_version.split("/")[-1]


def is_builtin(doc):
    """Kinds whose schema kustomize knows (strategic-merge keys apply to these only)."""
    g = _group(doc.get("apiVersion", ""))
    return g == "" or "." not in g or g.endswith(".k8s.io")


def pod_specs(doc):
    """Every pod spec inside a resource, as (path, dict)."""
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    out = []
    if kind == "Pod":
        out.append(spec)
    elif kind == "CronJob":
        t = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        if isinstance(t.get("spec"), dict):
            out.append(t["spec"])
    elif kind in WORKLOAD_KINDS:
        t = spec.get("template") or {}
        if isinstance(t.get("spec"), dict):
            out.append(t["spec"])
    return out


def all_containers(podspec):
    out = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in podspec.get(key) or []:
            if isinstance(c, dict):
                out.append(c)
    return out


def label_selector_matches(selector_text, labels):
    """Equality-based label selectors ("a=b,c!=d,e") as used in patch targets."""
    for term in [t.strip() for t in selector_text.split(",") if t.strip()]:
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.split("==", 1) if "==" in term else term.split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


# --------------------------------------------------------------------------- resources

class Resource:
    """A document plus the bookkeeping kustomize keeps about it."""

    def __init__(self, doc, source, generated=False, needs_hash=False):
        self.doc = doc
        self.source = source
        self.generated = generated
        self.needs_hash = needs_hash
        self.previous_names = []

    @property
    def kind(self):
        return self.doc.get("kind")

    @property
    def name(self):
        return (self.doc.get("metadata") or {}).get("name")

    @property
    def namespace(self):
        return (self.doc.get("metadata") or {}).get("namespace")

    def rename(self, new_name):
        if new_name != self.name:
            self.previous_names.append(self.name)
            self.doc.setdefault("metadata", {})["name"] = new_name

    def key(self):
        return (_group(self.doc.get("apiVersion", "")), self.kind, self.namespace, self.name)


# --------------------------------------------------------------------------- strategic merge

def _merge_keys(field, items):
    """patchMergeKey of a list field in built-in kinds, or None (list is replaced)."""
    if field in ("containers", "initContainers", "ephemeralContainers", "env", "volumes",
                 "imagePullSecrets"):
        return ("name",)
    if field == "volumeMounts":
        return ("mountPath",)
    if field == "volumeDevices":
        return ("devicePath",)
    if field == "hostAliases":
        return ("ip",)
    if field == "topologySpreadConstraints":
        return ("topologyKey", "whenUnsatisfiable")
    if field == "ports":
        if any(isinstance(i, dict) and "containerPort" in i for i in items):
            return ("containerPort",)
        if any(isinstance(i, dict) and "port" in i for i in items):
            return ("port",)
    return None


def strategic_merge(target, patch, builtin, field=None):
    if isinstance(patch, dict):
        if not isinstance(target, dict):
            target = {}
        directive = patch.get("$patch")
        if directive == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        if directive not in (None, "merge"):
            raise KustomizeError(f"unsupported $patch directive {directive!r}")
        out = dict(target)
        for k, v in patch.items():
            if k == "$patch":
                continue
            if k.startswith("$"):
                raise KustomizeError(f"unsupported strategic-merge directive {k!r}")
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = strategic_merge(out[k], v, builtin, k)
            else:
                out[k] = _strip_directives(copy.deepcopy(v))
        return out
    if isinstance(patch, list):
        keys = _merge_keys(field, patch + (target if isinstance(target, list) else [])) \
            if builtin else None
        if keys is None or not isinstance(target, list):
            return [_strip_directives(copy.deepcopy(i)) for i in patch
                    if not (isinstance(i, dict) and i.get("$patch") == "delete")]
        # kustomize (kyaml) order: the patch's items first, in patch order, then the
        # remaining items of the target in their order.
        head, used = [], set()
        for item in patch:
            if not isinstance(item, dict):
                raise KustomizeError(f"list {field!r}: expected mappings in the patch")
            present = [k for k in keys if k in item]
            ident = tuple(item.get(k) for k in present)
            idx = None
            for i, existing in enumerate(target):
                if i not in used and isinstance(existing, dict) and \
                        tuple(existing.get(k) for k in present) == ident:
                    idx = i
                    break
            if idx is not None:
                used.add(idx)
            if item.get("$patch") == "delete":
                continue
            if idx is None:
                head.append(_strip_directives(copy.deepcopy(item)))
            else:
                head.append(strategic_merge(target[idx], item, builtin, field))
        out = head + [x for i, x in enumerate(target) if i not in used]
        return out
    return copy.deepcopy(patch)


def _strip_directives(v):
    if isinstance(v, dict):
        return {k: _strip_directives(x) for k, x in v.items() if not k.startswith("$")}
    if isinstance(v, list):
        return [_strip_directives(x) for x in v]
    return v


# --------------------------------------------------------------------------- JSON 6902

def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc, parts, path):
    cur = doc
    for p in parts:
        if isinstance(cur, dict):
            if p not in cur:
                raise KustomizeError(f"JSON patch path {path!r}: no field {p!r}")
            cur = cur[p]
        elif isinstance(cur, list):
            try:
                cur = cur[int(p)]
            except (ValueError, IndexError) as e:
                raise KustomizeError(f"JSON patch path {path!r}: bad index {p!r}") from e
        else:
            raise KustomizeError(f"JSON patch path {path!r}: cannot descend into a scalar")
    return cur


def json6902(doc, ops):
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise KustomizeError(f"bad JSON patch operation {op!r}")
        kind, path = op["op"], op["path"]
        parts = _pointer(path)
        if kind == "test":
            if _walk(doc, parts, path) != op.get("value"):
                raise KustomizeError(f"JSON patch test failed at {path!r}")
            continue
        if kind in ("move", "copy"):
            src_parts = _pointer(op["from"])
            value = copy.deepcopy(_walk(doc, src_parts, op["from"]))
            if kind == "move":
                parent = _walk(doc, src_parts[:-1], op["from"])
                if isinstance(parent, list):
                    del parent[int(src_parts[-1])]
                else:
                    del parent[src_parts[-1]]
            kind, op = "add", {"value": value}
        if not parts:
            raise KustomizeError("JSON patch on the document root is not supported")
        parent = _walk(doc, parts[:-1], path)
        last = parts[-1]
        if kind == "add":
            value = copy.deepcopy(op["value"])
            if isinstance(parent, list):
                if last == "-":
                    parent.append(value)
                else:
                    parent.insert(int(last), value)
            else:
                parent[last] = value
        elif kind == "replace":
            if isinstance(parent, list):
                parent[int(last)] = copy.deepcopy(op["value"])
            else:
                if last not in parent:
                    raise KustomizeError(f"JSON patch replace: {path!r} does not exist")
                parent[last] = copy.deepcopy(op["value"])
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                if last not in parent:
                    raise KustomizeError(f"JSON patch remove: {path!r} does not exist")
                del parent[last]
        else:
            raise KustomizeError(f"unsupported JSON patch op {kind!r}")
    return doc


# --------------------------------------------------------------------------- generators

def _go_json(value):
    s = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def content_hash(doc):
    """kustomize's name suffix hash (api/hasher). The name is looked up with a path that
    never matches, so kustomize hashes an empty name; this reproduces that."""
    kind = doc.get("kind")
    if kind == "ConfigMap":
        m = {"kind": "ConfigMap", "name": "", "data": doc.get("data", "")}
        if isinstance(doc.get("binaryData"), dict):
            m["binaryData"] = doc["binaryData"]
    elif kind == "Secret":
        m = {"kind": "Secret", "type": doc.get("type", ""), "name": "",
             "data": doc.get("data", "")}
        if isinstance(doc.get("stringData"), dict):
            m["stringData"] = doc["stringData"]
    else:
        raise KustomizeError(f"no content hash for kind {kind}")
    h = hashlib.sha256(_go_json(m).encode("utf-8")).hexdigest()[:10]
    return h.translate(str.maketrans("013ae", "ghkmt"))


def _parse_env_file(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                raise KustomizeError(f"{path}: line without '=': {line!r}")
            k, v = line.split("=", 1)
            out.append((k, v))
    return out


def _generate(spec, kind, base_dir, global_opts):
    unknown = set(spec) - {"name", "namespace", "behavior", "literals", "files", "envs",
                           "env", "type", "options"}
    if unknown:
        raise KustomizeError(f"{kind} generator: unsupported fields {sorted(unknown)}")
    if spec.get("behavior", "create") != "create":
        raise KustomizeError(f"{kind} generator: only behavior 'create' is supported")
    pairs = []
    for lit in spec.get("literals") or []:
        if "=" not in lit:
            raise KustomizeError(f"{kind} generator literal without '=': {lit!r}")
        k, v = lit.split("=", 1)
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
            v = v[1:-1]
        pairs.append((k, v))
    for f in spec.get("files") or []:
        k, p = f.split("=", 1) if "=" in f else (os.path.basename(f), f)
        with open(os.path.join(base_dir, p), encoding="utf-8") as fh:
            pairs.append((k, fh.read()))
    envs = list(spec.get("envs") or []) + ([spec["env"]] if spec.get("env") else [])
    for e in envs:
        pairs.extend(_parse_env_file(os.path.join(base_dir, e)))
    data = {}
    for k, v in pairs:
        if k in data:
            raise KustomizeError(f"{kind} {spec['name']}: duplicate key {k!r}")
        data[k] = v
    opts = dict(global_opts or {})
    opts.update(spec.get("options") or {})
    unknown = set(opts) - {"disableNameSuffixHash", "labels", "annotations", "immutable"}
    if unknown:
        raise KustomizeError(f"{kind} generator options: unsupported {sorted(unknown)}")
    doc = {"apiVersion": "v1", "kind": kind, "metadata": {"name": spec["name"]}}
    if spec.get("namespace"):
        doc["metadata"]["namespace"] = spec["namespace"]
    if opts.get("labels"):
        doc["metadata"]["labels"] = dict(opts["labels"])
    if opts.get("annotations"):
        doc["metadata"]["annotations"] = dict(opts["annotations"])
    if kind == "Secret":
        doc["type"] = spec.get("type", "Opaque")
        doc["data"] = {k: base64.b64encode(v.encode("utf-8")).decode("ascii")
                       for k, v in data.items()}
    else:
        doc["data"] = data
    if opts.get("immutable"):
        doc["immutable"] = True
    return Resource(doc, f"{kind.lower()}Generator {spec['name']}", generated=True,
                    needs_hash=not opts.get("disableNameSuffixHash", False))


# --------------------------------------------------------------------------- transformers

def _set_path_labels(obj, path, labels, create):
    """Set labels at a '/'-separated path; '[]' after a segment walks a list."""
    head, _, rest = path.partition("/")
    is_list = head.endswith("[]")
    key = head[:-2] if is_list else head
    if not isinstance(obj, dict):
        return
    if not rest:
        if key not in obj:
            if not create:
                return
            obj[key] = {}
        if obj[key] is None:
            obj[key] = {}
        obj[key].update(labels)
        return
    if key not in obj:
        if not create or is_list:
            return
        obj[key] = {}
    child = obj[key]
    if isinstance(child, list):
        for item in child:
            _set_path_labels(item, rest, labels, create)
    else:
        _set_path_labels(child, rest, labels, create)


_TEMPLATE_PATHS = {
    "StatefulSet": ["spec/template/metadata/labels",
                    "spec/volumeClaimTemplates[]/metadata/labels"],
    "Deployment": ["spec/template/metadata/labels"],
    "ReplicaSet": ["spec/template/metadata/labels"],
    "DaemonSet": ["spec/template/metadata/labels"],
    "Job": ["spec/template/metadata/labels"],
    "ReplicationController": ["spec/template/metadata/labels"],
    "CronJob": ["spec/jobTemplate/metadata/labels",
                "spec/jobTemplate/spec/template/metadata/labels"],
}

_SELECTOR_PATHS = {
    "Service": [("spec/selector", True)],
    "ReplicationController": [("spec/selector", True)],
    "Deployment": [("spec/selector/matchLabels", True)],
    "ReplicaSet": [("spec/selector/matchLabels", True)],
    "DaemonSet": [("spec/selector/matchLabels", True)],
    "StatefulSet": [("spec/selector/matchLabels", True)],
    "Job": [("spec/selector/matchLabels", False)],
    "CronJob": [("spec/jobTemplate/spec/selector/matchLabels", False)],
    "PodDisruptionBudget": [("spec/selector/matchLabels", False)],
    "NetworkPolicy": [("spec/podSelector/matchLabels", False),
                      ("spec/ingress[]/from[]/podSelector/matchLabels", False),
                      ("spec/egress[]/to[]/podSelector/matchLabels", False)],
}

_AFFINITY_PATHS = [
    "spec/template/spec/affinity/podAffinity/"
    "preferredDuringSchedulingIgnoredDuringExecution[]/podAffinityTerm/labelSelector/matchLabels",
    "spec/template/spec/affinity/podAffinity/"
    "requiredDuringSchedulingIgnoredDuringExecution[]/labelSelector/matchLabels",
    "spec/template/spec/affinity/podAntiAffinity/"
    "preferredDuringSchedulingIgnoredDuringExecution[]/podAffinityTerm/labelSelector/matchLabels",
    "spec/template/spec/affinity/podAntiAffinity/"
    "requiredDuringSchedulingIgnoredDuringExecution[]/labelSelector/matchLabels",
    "spec/template/spec/topologySpreadConstraints[]/labelSelector/matchLabels",
]


def _apply_labels(res, pairs, include_selectors, include_templates):
    doc = res.doc
    kind = res.kind
    _set_path_labels(doc, "metadata/labels", pairs, True)
    if include_templates or include_selectors:
        for p in _TEMPLATE_PATHS.get(kind, []):
            _set_path_labels(doc, p, pairs, True)
    if include_selectors:
        for p, create in _SELECTOR_PATHS.get(kind, []):
            _set_path_labels(doc, p, pairs, create)
        if kind in ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet"):
            for p in _AFFINITY_PATHS:
                _set_path_labels(doc, p, pairs, False)


def _apply_images(res, images):
    for ps in pod_specs(res.doc):
        for c in all_containers(ps):
            img = c.get("image")
            if not isinstance(img, str):
                continue
            name, digest = (img.split("@", 1) + [None])[:2]
            tag = None
            last = name.rsplit("/", 1)[-1]
            if ":" in last:
                name, tag = name.rsplit(":", 1)
            for spec in images:
                if spec.get("name") != name:
                    continue
                new = spec.get("newName", name)
                if spec.get("digest"):
                    c["image"] = f"{new}@{spec['digest']}"
                elif spec.get("newTag") is not None:
                    c["image"] = f"{new}:{spec['newTag']}"
                elif digest:
                    c["image"] = f"{new}@{digest}"
                elif tag:
                    c["image"] = f"{new}:{tag}"
                else:
                    c["image"] = new
                break


def _ref_slots(doc):
    """(kind referred to, container dict, key) for every by-name reference in a resource."""
    slots = []
    if doc.get("kind") == "StatefulSet" and isinstance(doc.get("spec"), dict):
        slots.append(("Service", doc["spec"], "serviceName"))
    for ps in pod_specs(doc):
        if "serviceAccountName" in ps:
            slots.append(("ServiceAccount", ps, "serviceAccountName"))
        for s in ps.get("imagePullSecrets") or []:
            slots.append(("Secret", s, "name"))
        for v in ps.get("volumes") or []:
            if isinstance(v.get("configMap"), dict):
                slots.append(("ConfigMap", v["configMap"], "name"))
            if isinstance(v.get("secret"), dict):
                slots.append(("Secret", v["secret"], "secretName"))
            if isinstance(v.get("persistentVolumeClaim"), dict):
                slots.append(("PersistentVolumeClaim", v["persistentVolumeClaim"],
                              "claimName"))
            for src in (v.get("projected") or {}).get("sources") or []:
                if isinstance(src.get("configMap"), dict):
                    slots.append(("ConfigMap", src["configMap"], "name"))
                if isinstance(src.get("secret"), dict):
                    slots.append(("Secret", src["secret"], "name"))
        for c in all_containers(ps):
            for ef in c.get("envFrom") or []:
                if isinstance(ef.get("configMapRef"), dict):
                    slots.append(("ConfigMap", ef["configMapRef"], "name"))
                if isinstance(ef.get("secretRef"), dict):
                    slots.append(("Secret", ef["secretRef"], "name"))
            for e in c.get("env") or []:
                vf = e.get("valueFrom") or {}
                if isinstance(vf.get("configMapKeyRef"), dict):
                    slots.append(("ConfigMap", vf["configMapKeyRef"], "name"))
                if isinstance(vf.get("secretKeyRef"), dict):
                    slots.append(("Secret", vf["secretKeyRef"], "name"))
    return slots


def _fix_references(resources, renamed):
    """renamed: list of (Resource, old name). Rewrites references in the same namespace."""
    if not renamed:
        return
    table = {}
    for r, old in renamed:
        table[(r.kind, r.namespace, old)] = r.name
    for res in resources:
        for kind, holder, key in _ref_slots(res.doc):
            ref = holder.get(key)
            new = table.get((kind, res.namespace, ref))
            if new is not None:
                holder[key] = new


# --------------------------------------------------------------------------- build

def _select(resources, target):
    unknown = set(target) - {"kind", "name", "namespace", "group", "version",
                             "labelSelector", "annotationSelector"}
    if unknown:
        raise KustomizeError(f"patch target: unsupported fields {sorted(unknown)}")
    out = []
    for r in resources:
        av = r.doc.get("apiVersion", "")
        if "kind" in target and r.kind != target["kind"]:
            continue
        if "group" in target and _group(av) != target["group"]:
            continue
        if "version" in target and _version(av) != target["version"]:
            continue
        if "name" in target:
            names = [r.name] + r.previous_names
            if not any(re.fullmatch(target["name"], n or "") for n in names):
                continue
        if "namespace" in target and not re.fullmatch(target["namespace"], r.namespace or ""):
            continue
        meta = r.doc.get("metadata") or {}
        if "labelSelector" in target and \
                not label_selector_matches(target["labelSelector"], meta.get("labels") or {}):
            continue
        if "annotationSelector" in target and \
                not label_selector_matches(target["annotationSelector"],
                                           meta.get("annotations") or {}):
            continue
        out.append(r)
    return out


def _load_patch(entry, base_dir):
    unknown = set(entry) - {"path", "patch", "target", "options"}
    if unknown:
        raise KustomizeError(f"patches: unsupported fields {sorted(unknown)}")
    if entry.get("options"):
        raise KustomizeError("patches: options are not supported")
    if ("path" in entry) == ("patch" in entry):
        raise KustomizeError("patches: exactly one of path and patch is required")
    if "path" in entry:
        with open(os.path.join(base_dir, entry["path"]), encoding="utf-8") as f:
            text = f.read()
    else:
        text = entry["patch"]
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    if len(docs) != 1:
        raise KustomizeError("patches: one document per patch is supported")
    return docs[0]


def _apply_patches(resources, patches, base_dir):
    for entry in patches or []:
        body = _load_patch(entry, base_dir)
        target = entry.get("target")
        if isinstance(body, list):
            if not target:
                raise KustomizeError("patches: a JSON 6902 patch needs a target")
            matched = _select(resources, target)
            if not matched:
                raise KustomizeError(f"patches: target {target} matches no resource")
            for r in matched:
                r.doc = json6902(r.doc, body)
            continue
        if not isinstance(body, dict):
            raise KustomizeError("patches: a patch must be a mapping or a list")
        if target:
            matched = _select(resources, target)
        else:
            meta = body.get("metadata") or {}
            sel = {"kind": body.get("kind"), "name": re.escape(meta.get("name", ""))}
            if meta.get("namespace"):
                sel["namespace"] = re.escape(meta["namespace"])
            matched = _select(resources, sel)
        if not matched:
            raise KustomizeError(f"patches: no resource matches patch {target or body.get('kind')}")
        for r in matched:
            if body.get("$patch") == "delete":
                resources.remove(r)
                continue
            p = copy.deepcopy(body)
            if target:
                # the patch's own identity is ignored when a target selects the resources
                p.setdefault("metadata", {})["name"] = r.name
                if r.namespace:
                    p["metadata"]["namespace"] = r.namespace
                p["kind"] = r.kind
                p["apiVersion"] = r.doc.get("apiVersion")
            r.doc = strategic_merge(r.doc, p, is_builtin(r.doc))


def _build(directory, stack):
    directory = os.path.abspath(directory)
    if directory in stack:
        raise KustomizeError(f"kustomization cycle through {directory}")
    kpath = _find_kustomization(directory)
    docs = _load_yaml_docs(kpath)
    if len(docs) != 1:
        raise KustomizeError(f"{kpath}: expected one document")
    k = docs[0]
    unknown = set(k) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{kpath}: unsupported kustomize fields {sorted(unknown)}")
    if k.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{kpath}: kind must be Kustomization")

    resources = []
    for entry in k.get("resources") or []:
        if os.path.isabs(entry) or "://" in entry:
            raise KustomizeError(f"{kpath}: resource {entry!r}: only relative paths are "
                                 f"supported")
        p = os.path.normpath(os.path.join(directory, entry))
        if os.path.isdir(p):
            resources.extend(_build(p, stack + [directory]))
        elif os.path.isfile(p):
            if not p.startswith(directory + os.sep):
                raise KustomizeError(f"{kpath}: file {entry!r} is outside the "
                                     f"kustomization directory (kustomize refuses it)")
            for d in _load_yaml_docs(p):
                resources.append(Resource(d, os.path.relpath(p)))
        else:
            raise KustomizeError(f"{kpath}: resource {entry!r} not found")

    gopts = k.get("generatorOptions") or {}
    for spec in k.get("configMapGenerator") or []:
        resources.append(_generate(spec, "ConfigMap", directory, gopts))
    for spec in k.get("secretGenerator") or []:
        resources.append(_generate(spec, "Secret", directory, gopts))

    # transformer order of kustomize: patches, namespace, prefix/suffix, labels,
    # annotations, replicas, images
    _apply_patches(resources, k.get("patches"), directory)

    ns = k.get("namespace")
    if ns:
        for r in resources:
            if r.kind == "Namespace":
                r.rename(ns)
            elif r.kind not in CLUSTER_SCOPED_KINDS:
                r.doc.setdefault("metadata", {})["namespace"] = ns

    prefix, suffix = k.get("namePrefix", ""), k.get("nameSuffix", "")
    renamed = []
    if prefix or suffix:
        for r in resources:
            if r.kind in ("Namespace", "CustomResourceDefinition"):
                continue
            old = r.name
            r.rename(f"{prefix}{old}{suffix}")
            renamed.append((r, old))

    for entry in k.get("labels") or []:
        unknown = set(entry) - {"pairs", "includeSelectors", "includeTemplates"}
        if unknown:
            raise KustomizeError(f"{kpath}: labels: unsupported fields {sorted(unknown)}")
        pairs = {str(a): str(b) for a, b in (entry.get("pairs") or {}).items()}
        for r in resources:
            _apply_labels(r, pairs, bool(entry.get("includeSelectors")),
                          bool(entry.get("includeTemplates")))
    if k.get("commonLabels"):
        pairs = {str(a): str(b) for a, b in k["commonLabels"].items()}
        for r in resources:
            _apply_labels(r, pairs, True, True)
    if k.get("commonAnnotations"):
        ann = {str(a): str(b) for a, b in k["commonAnnotations"].items()}
        for r in resources:
            r.doc.setdefault("metadata", {}).setdefault("annotations", {}).update(ann)
            for ps_holder in ([r.doc["spec"]["template"]]
                              if r.kind in WORKLOAD_KINDS and
                              isinstance((r.doc.get("spec") or {}).get("template"), dict)
                              else []):
                ps_holder.setdefault("metadata", {}).setdefault("annotations", {}).update(ann)

    for entry in k.get("replicas") or []:
        matched = [r for r in resources if r.kind in REPLICA_KINDS and
                   entry["name"] in [r.name] + r.previous_names]
        if not matched:
            raise KustomizeError(f"{kpath}: replicas: no workload named {entry['name']!r}")
        for r in matched:
            r.doc.setdefault("spec", {})["replicas"] = entry["count"]

    if k.get("images"):
        for r in resources:
            _apply_images(r, k["images"])

    _fix_references(resources, renamed)
    return resources


def build(directory):
    """Render a kustomization directory; returns the list of documents."""
    resources = _build(directory, [])
    renamed = []
    for r in resources:
        if r.needs_hash:
            old = r.name
            r.rename(f"{old}-{content_hash(r.doc)}")
            renamed.append((r, old))
    _fix_references(resources, renamed)
    seen = {}
    for r in resources:
        if r.key() in seen:
            raise KustomizeError(
                f"duplicate resource {r.kind}/{r.name} (from {seen[r.key()]} and {r.source})")
        seen[r.key()] = r.source
    return [r.doc for r in resources]


def dump(docs):
    return "---\n".join(yaml.safe_dump(d, sort_keys=True, default_flow_style=False)
                        for d in docs)
