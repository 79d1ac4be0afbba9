#!/usr/bin/env bash
# The actions/checkout double: fetch from the fake GitHub over HTTP with the job's token.
set -euo pipefail
server="${GITHUB_SERVER_URL:?}"
url="$server/$IN_REPOSITORY"
test -n "$IN_TOKEN" || { echo "::error::checkout: no token (input 'token')"; exit 1; }
[ -z "$IN_SPARSE" ] || { echo "::error::checkout double: sparse-checkout is not supported"; exit 1; }
auth="AUTHORIZATION: basic $(printf 'x-access-token:%s' "$IN_TOKEN" | base64 -w0)"
# which run and job is calling (the fake GitHub grants each job its own permissions)
who=(-c "http.extraheader=X-Act-Run: $GITHUB_RUN_ID" -c "http.extraheader=X-Act-Job: $GITHUB_JOB")
remote() { git "${who[@]}" -c "http.$server/.extraheader=$auth" "$@"; }
# The real rule: no `ref` input -> github.ref and github.sha (when repository is this repository)
ref="$IN_REF"; sha=""
if [ -z "$ref" ] && [ "$IN_REPOSITORY" = "$GITHUB_REPOSITORY" ]; then ref="$CTX_REF"; sha="$CTX_SHA"; fi
if [[ "$ref" =~ ^[0-9a-f]{40}$ ]]; then sha="$ref"; ref=""; fi
if [ -z "$ref" ] && [ -z "$sha" ]; then
  ref=$(remote ls-remote --symref "$url" HEAD | awk '/^ref:/{print $2}')
fi
if [ -n "$ref" ] && [[ "$ref" != refs/* ]]; then
  if remote ls-remote --exit-code --heads "$url" "$ref" >/dev/null; then ref="refs/heads/$ref"; else ref="refs/tags/$ref"; fi
fi
[ -n "$sha" ] || sha=$(remote ls-remote --exit-code "$url" "$ref" | awk 'NR==1{print $1}')
test -n "$sha" || { echo "::error::checkout: cannot resolve '$ref' in $url"; exit 1; }
branch=""
case "$ref" in
  refs/heads/*) branch="${ref#refs/heads/}"; track="refs/remotes/origin/$branch";;
  refs/pull/*)  track="refs/remotes/pull/${ref#refs/pull/}";;
  refs/tags/*)  track="$ref";;
  *)            track="";;
esac
dest="$GITHUB_WORKSPACE${IN_PATH:+/$IN_PATH}"
if [ "$IN_CLEAN" = true ] && [ -d "$dest" ]; then find "$dest" -mindepth 1 -delete; fi
mkdir -p "$dest"; cd "$dest"
git init -q
git config --local gc.auto 0
git config --local http.extraheader "X-Act-Run: $GITHUB_RUN_ID"
git config --local --add http.extraheader "X-Act-Job: $GITHUB_JOB"
git remote add origin "$url"
if [ "$IN_DEPTH" = 0 ]; then
  remote fetch -q --prune --no-recurse-submodules origin '+refs/heads/*:refs/remotes/origin/*' '+refs/tags/*:refs/tags/*'
  if [ -n "$track" ] && [[ "$ref" != refs/heads/* ]] && [[ "$ref" != refs/tags/* ]]; then remote fetch -q origin "+$sha:$track"; fi
else
  tags=--no-tags; [ "$IN_TAGS" = true ] && tags=--tags
  remote fetch -q $tags --prune --no-recurse-submodules --depth="$IN_DEPTH" origin "+$sha${track:+:$track}"
fi
if [ -n "$branch" ]; then git checkout -q --force -B "$branch" "$track"; else git checkout -q --force --detach "$sha"; fi
test "$(git rev-parse HEAD)" = "$sha" || { echo "::error::checkout: HEAD is not $sha"; exit 1; }
if [ "$IN_PERSIST" = true ]; then
  git config --local "http.$server/.extraheader" "$auth"   # as the real action persists it
fi
echo "ref=$ref" >> "$GITHUB_OUTPUT"; echo "commit=$sha" >> "$GITHUB_OUTPUT"
echo "checkout double: $url $ref@${sha:0:12} depth=$IN_DEPTH persist-credentials=$IN_PERSIST -> $dest"
