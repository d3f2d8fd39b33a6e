#!/usr/bin/env bash
# Stage the code the last device call carries: .gpu/src holds gate/, trainers/, contracts/, examples/ and bench/gpu/
# of one commit (git archive, so nothing uncommitted travels) and COMMIT naming it; h200_session.py records that
# commit as "code_commit" in throughput-h200.json.
#   usage: bench/gpu/stage_h200.sh [REV=HEAD] [REPO=/work/main]
# The trained run the candidates derive from (.gpu/run) and the runtime parts (.gpu/p0..p4, .gpu/last) are staged
# apart (pack_h200.sh); the device calls that carry them are listed in docs/smoke.md's GPU section.
set -euo pipefail
rev=${1:-HEAD}; repo=${2:-/work/main}
commit=$(git -C "$repo" rev-parse --verify "$rev^{commit}")
dest=$repo/.gpu/src
rm -rf "$dest"; mkdir -p "$dest"
git -C "$repo" archive "$commit" gate trainers contracts examples bench/gpu | tar xf - -C "$dest"
echo "$commit" > "$dest/COMMIT"
echo "staged $commit in $dest ($(du -sh "$dest" | cut -f1))"
