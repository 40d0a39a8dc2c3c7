#!/usr/bin/env bash
# Build identity for a release: one image tag per build, never reused, so every node runs the
# binary the manifest names and a new build always rolls the pods (docs/operations.md, "Releasing").
#
#   scripts/release-image.sh REGISTRY/client-telemetry            print the steps (default)
#   scripts/release-image.sh REGISTRY/client-telemetry --run      run them (needs docker buildx
#                                                                  and kustomize/kubectl)
# The tag is <Cargo version>-<git short sha> (e.g. 0.1.0-e21d31e); the overlay then pins the
# pushed digest as well, so even a re-pushed tag cannot change what runs.
# Optional: OVERLAY=deploy/k8s/overlays/prod (default: the example overlay).
set -euo pipefail
cd "$(dirname "$0")/.."

image=${1:-}
mode=${2:---print}
[[ -n $image && $image != -* ]] || { echo "usage: $0 REGISTRY/client-telemetry [--print|--run]" >&2; exit 2; }
overlay=${OVERLAY:-deploy/k8s/overlays/example}

version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)
commit=$(git rev-parse HEAD)
short=$(git rev-parse --short=7 HEAD)
[[ -n $version ]] || { echo "no version in Cargo.toml" >&2; exit 1; }
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then
  echo "warning: uncommitted changes; the image would not match commit $short" >&2
fi
tag="$version-$short"

steps=(
  "docker buildx build --build-arg GIT_COMMIT=$commit --build-arg VERSION=$version -t $image:$tag --push ."
  "digest=\$(docker buildx imagetools inspect $image:$tag --format '{{json .Manifest.Digest}}' | tr -d '\"')"
  "(cd $overlay && kustomize edit set image client-telemetry=$image:$tag@\$digest)"
  "git -C $overlay add kustomization.yaml && git commit -m 'client-telemetry $tag' $overlay/kustomization.yaml"
)

case $mode in
  --print)
    echo "# client-telemetry $version, commit $commit -> $image:$tag"
    printf '%s\n' "${steps[@]}"
    ;;
  --run)
    for step in "${steps[@]}"; do
      echo "+ $step"
      eval "$step"
    done
    ;;
  *) echo "unknown mode $mode (--print or --run)" >&2; exit 2 ;;
esac
