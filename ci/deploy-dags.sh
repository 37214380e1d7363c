#!/bin/sh
# Deliver the DAG package to Airflow: dags/ (with the image manifest), plugins/ and the model sources
# models/ (without their tests: the scheduler only locates and compiles them, mlplatform/models.py)
# are committed to the deploy branch that the Airflow chart's git-sync sidecars follow
# (helm/airflow/values.yaml).
#
# Why a git-sync branch and not an S3 DAG bucket: git-sync swaps a complete checkout atomically (the
# scheduler never parses half-synced files), needs no extra AWS permission on any Airflow pod, every
# deploy is a commit (audit: which DAG code and which image digests ran), and a rollback is a revert on
# one branch. The branch holds only deployable files, so DAG parsing never sees tests or Terraform.
#
# Needs: DAGS_DEPLOY_TOKEN (project access token, write_repository, masked+protected CI variable),
#        DAGS_DEPLOY_BRANCH (default airflow-dags, a protected branch), dags/image_manifest.json present.
set -eu
: "${DAGS_DEPLOY_TOKEN:?project access token with write_repository (masked, protected CI variable)}"
BRANCH="${DAGS_DEPLOY_BRANCH:-airflow-dags}"
SRC="${CI_PROJECT_DIR:-$(pwd)}"
test -s "$SRC/dags/image_manifest.json" || { echo "dags/image_manifest.json missing: run the image-manifest job first" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
remote="https://gitlab-ci-token:${DAGS_DEPLOY_TOKEN}@${CI_SERVER_HOST}/${CI_PROJECT_PATH}.git"

if git ls-remote --exit-code --heads "$remote" "$BRANCH" >/dev/null 2>&1; then
  git clone --quiet --depth 1 --branch "$BRANCH" "$remote" "$work/deploy"
else
  git init --quiet "$work/deploy"
  git -C "$work/deploy" checkout --quiet --orphan "$BRANCH"
  git -C "$work/deploy" remote add origin "$remote"
fi

cd "$work/deploy"
find . -mindepth 1 -maxdepth 1 ! -name .git -exec rm -rf {} +
cp -R "$SRC/dags" "$SRC/plugins" "$SRC/models" .
rm -rf models/*/tests
find . \( -name __pycache__ -o -name '*.egg-info' \) -type d -prune -exec rm -rf {} +
printf '%s\n' "$CI_COMMIT_SHA" > DEPLOYED_COMMIT

git config user.name "mlops-ci"
git config user.email "mlops-ci@noreply.invalid"
git add -A
if git diff --cached --quiet; then
  echo "deploy branch $BRANCH already at this content"
  exit 0
fi
git commit --quiet -m "Deploy DAGs from ${CI_COMMIT_SHA}" -m "Pipeline: ${CI_PIPELINE_URL:-n/a}"
# ci.skip: the deploy branch must not start a pipeline of its own.
git push --quiet -o ci.skip origin "HEAD:refs/heads/$BRANCH"
echo "deployed ${CI_COMMIT_SHA} to $BRANCH"
