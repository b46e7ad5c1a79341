#!/usr/bin/env bash
# Local side of a sweep on a borrowed GPU machine that has no network and takes at most 64 MiB
# of ignored files along: packs the offline encoder for the named datasets (scripts/pack_encoder.py,
# ~46 MB zstd for Weibo instead of 470 MB), copies those datasets from the mirror, and records the
# commit the machine will run (its copy of .git may be stale; KNOWFREE_GIT_COMMIT carries it).
#   KNOWFREE_DATA_MIRROR=../shared/datasets bash scripts/gpu/prepare.sh weibo [youku ...]
# Then, with the `run` tool of the device, carry [".gpu"] and run scripts/gpu/sweep.sh there.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 DATASET [DATASET...]" >&2; exit 2; }
: "${KNOWFREE_DATA_MIRROR:?set KNOWFREE_DATA_MIRROR to the dataset mirror (e.g. ../shared/datasets)}"
cd "$(dirname "$0")/../.."
py=${PYTHON:-.venv/bin/python}
name=e5-$(IFS=-; echo "$*")
mkdir -p .gpu/datasets
if [ ! -f ".gpu/$name.tar.zst" ]; then
  rm -rf ".gpu/$name"
  args=("$1"); for d in "${@:2}"; do args+=(--dataset "$d"); done
  "$py" scripts/pack_encoder.py e5-small-offline "${args[@]}" ".gpu/$name"
  tar -C .gpu -cf - "$name" | zstd -q -19 -T0 -o ".gpu/$name.tar.zst"
  rm -rf ".gpu/$name"
fi
for d in "$@"; do
  [ ! -d ".gpu/datasets/$d" ] || { chmod -R u+w ".gpu/datasets/$d"; rm -rf ".gpu/datasets/$d"; }
  cp -r "$KNOWFREE_DATA_MIRROR/$d" ".gpu/datasets/$d"
  chmod -R u+w ".gpu/datasets/$d"  # the mirror is read-only; a rerun must be able to replace the copy
done
git rev-parse HEAD > .gpu/commit
[ -z "$(git status --porcelain --untracked-files=no)" ] || echo "warning: the tree has uncommitted changes; .gpu/commit names HEAD" >&2
echo "encoder: .gpu/$name.tar.zst ($(du -h ".gpu/$name.tar.zst" | cut -f1)); total to carry: $(du -sh .gpu | cut -f1)"
