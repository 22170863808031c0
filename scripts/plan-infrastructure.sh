#!/usr/bin/env bash
# terraform init, validate and plan of infrastructure/ for each environment, against a
# moto_server of its own (the provider's endpoints pointed at it, fake credentials):
# every resource's arguments are checked by the AWS provider itself, and every data
# source is read, without an AWS account. Runs offline: Terraform is the machine's
# (`terraform` on PATH) and the AWS provider comes from a local mirror
# (TF_PLUGIN_DIR, default /opt/tf-plugins), never from the registry.
#
# The configuration is copied to a scratch directory with two override files beside it:
# a local backend instead of S3, and the provider's credentials and endpoint. Nothing
# is written to infrastructure/.
#
#   scripts/plan-infrastructure.sh                 # dev, staging and production
#   scripts/plan-infrastructure.sh production      # one environment
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
TF_PLUGIN_DIR=${TF_PLUGIN_DIR:-/opt/tf-plugins}
environments=("$@")
[ ${#environments[@]} -gt 0 ] || environments=(dev staging production)

command -v terraform >/dev/null 2>&1 || {
    echo "error: terraform is not on PATH (this machine's image provides it)" >&2
    exit 1
}
[ -d "$TF_PLUGIN_DIR/registry.terraform.io/hashicorp/aws" ] || {
    echo "error: no AWS provider under $TF_PLUGIN_DIR (set TF_PLUGIN_DIR)" >&2
    exit 1
}
ensure_venv
ensure_moto

work=$(mktemp -d /tmp/vigil-plan.XXXXXX)
cleanup() {
    [ -n "${MOTO_PID:-}" ] && kill "$MOTO_PID" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
port=$(free_port)
start_moto "$port" "$work/moto.log"

# templatefile() reads ../dashboards from the configuration's directory.
mkdir -p "$work/repo"
cp -r infrastructure dashboards "$work/repo/"
rm -rf "$work/repo/infrastructure/.terraform" "$work/repo/infrastructure/tests"
cat >"$work/repo/infrastructure/backend_override.tf" <<'HCL'
terraform {
  backend "local" {}
}
HCL
# Both providers (the main one and aws.backup) get fake credentials; the endpoint is
# AWS_ENDPOINT_URL, below.
for alias in "" backup; do
    cat <<HCL
provider "aws" {
  ${alias:+alias = \"$alias\"}
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  s3_use_path_style           = true
}
HCL
done >"$work/repo/infrastructure/provider_override.tf"

export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
export TF_CLI_CONFIG_FILE=/dev/null TF_DATA_DIR="$work/tf-data"
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
unset AWS_PROFILE AWS_SESSION_TOKEN
# Read from SSM in a real account (infrastructure/README.md); a placeholder here.
export TF_VAR_pagerduty_endpoint_url=https://events.pagerduty.com/integration/plan-check/enqueue

cd "$work/repo/infrastructure"
for env in "${environments[@]}"; do
    [ -f "environments/$env.tfvars" ] || { echo "error: no environments/$env.tfvars" >&2; exit 2; }
    echo "==> terraform init, validate and plan: $env"
    terraform init -no-color -input=false -plugin-dir="$TF_PLUGIN_DIR" -reconfigure \
        -backend-config="path=$work/$env.tfstate" >"$work/init-$env.log" 2>&1 || {
        cat "$work/init-$env.log" >&2
        exit 1
    }
    terraform validate -no-color
    if ! terraform plan -no-color -input=false -lock=false -var-file="environments/$env.tfvars" \
        -out="$work/$env.plan" >"$work/plan-$env.log" 2>&1; then
        cat "$work/plan-$env.log" >&2
        echo "--- moto_server's log:" >&2
        tail -n 40 "$work/moto.log" >&2
        exit 1
    fi
    grep -E '^Plan:' "$work/plan-$env.log"
    # A plan that prints a warning is not clean.
    if grep -qE '^(│ )?Warning: ' "$work/plan-$env.log"; then
        grep -A8 -E '^(│ )?Warning: ' "$work/plan-$env.log" >&2
        exit 1
    fi
done
