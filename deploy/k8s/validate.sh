#!/usr/bin/env bash
# Render the base and both overlays and validate them: structure, cross references, the
# services' contract (ports, environment, probes, security) and the Kafka topics. Also
# checks YAML style and the container image's Dockerfile. Exits non-zero on any problem.
#
# Needs python3 with PyYAML (Debian: python3-yaml). When kubectl is on PATH, the manifests
# are also rendered with `kubectl kustomize` and both renders must be identical; yamllint
# and dockerfilelint are used when present.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tool="${here}/tools/k8s_validate.py"
dockerfile="${here}/../docker/Dockerfile"

# A Python 3 with PyYAML: the first python3 on PATH, else Debian's, installing python3-yaml
# when running as root.
python=""
for candidate in python3 /usr/bin/python3; do
  if command -v "${candidate}" >/dev/null 2>&1 &&
    "${candidate}" -c 'import yaml' >/dev/null 2>&1; then
    python="${candidate}"
    break
  fi
done
if [ -z "${python}" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "validate.sh: installing python3-yaml"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq python3 python3-yaml >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq python3 python3-yaml >/dev/null; }
    python=/usr/bin/python3
  else
    echo "validate.sh: needs python3 with PyYAML; install it (Debian: apt-get install" \
      "python3-yaml) or run this script as root to have it installed" >&2
    exit 1
  fi
fi

kubectl_args=()
if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
  kubectl_args=(--kubectl kubectl)
else
  echo "validate.sh: no kubectl with kustomize; rendering with the built-in renderer only"
fi

# 1. the validator must reject broken manifests (and accept good ones) before it is trusted
"${python}" "${tool}" --self-test "${kubectl_args[@]}"

# 2. optional linters
if command -v yamllint >/dev/null 2>&1; then
  yamllint --strict -c "${here}/tools/yamllint.yaml" "${here}"
  echo "yamllint: clean"
fi
if command -v dockerfilelint >/dev/null 2>&1; then
  dockerfilelint "${dockerfile}" >/dev/null || dockerfilelint "${dockerfile}"
  echo "dockerfilelint: clean"
fi

# 3. render and validate every environment
"${python}" "${tool}" --root "${here}" --dockerfile "${dockerfile}" "${kubectl_args[@]}" \
  base dev prod
