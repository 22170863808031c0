#!/usr/bin/env bash
# Deploys the Watch Together server with Vigil as the gate (docs/deploying.md).
#
#   scripts/deploy.sh <dev|staging|production> <deploy|rollback|status> [--image TAG]
#                     [--bake SECONDS] [--dry-run]
#
# deploy    Registers the release's task definition (the family's latest revision,
#           with the app container's image tag replaced by --image), starts it, and
#           holds it to Vigil's verdict: every new task's sidecar must report its
#           /status ok and no critical alert firing (the series vigil_deploy_blockers,
#           0, published to CloudWatch per task definition) for the bake time.
#           Blue-green environments (blue_green_deployments in the tfvars: production)
#           deploy through CodeDeploy: the replacement task set starts without
#           production traffic and traffic shifts only after the gate; a failed gate
#           stops the deployment and CodeDeploy returns to the original task set.
#           Rolling environments update the service and, on a failed gate, update it
#           back to the previous task definition. A failed release's revision is
#           deregistered, so that no later deploy starts from it.
# rollback  Returns traffic to the previous task set while CodeDeploy keeps it
#           (deployment_rollback_window_minutes), else deploys the previous active
#           revision of the family, without a bake: it is a known version.
# status    What runs where: each task set or deployment, its task definition and
#           counts, and Vigil's verdict on it over the last 5 minutes.
#
# --bake SECONDS   How long the new tasks must be clean (default 300, or
#                  DEPLOY_BAKE_SECONDS).
# --dry-run        Prints every AWS call, in order, and makes none; values an earlier
#                  call would return are shown as <placeholders>.
#
# Needs the AWS CLI and jq, and credentials for the environment's account. The
# region is AWS_REGION, else the tfvars' aws_region. Knobs for the gate, in seconds:
# DEPLOY_STARTUP_GRACE_SECONDS (600: how long the new tasks may take to first report
# clean), DEPLOY_GATE_PERIOD_SECONDS (60: Vigil's publish interval) and
# DEPLOY_POLL_SECONDS (15). Exit status: 0 done, 1 the release failed (rolled back),
# 2 a usage error, 3 an AWS call failed.
set -euo pipefail
shopt -s inherit_errexit
SELF=$(readlink -f "$0")
cd "$(dirname "$SELF")/.."

usage() {
    sed -n '4,5p' "$SELF" | sed 's/^# *//' >&2
    [ $# -gt 0 ] && echo "error: $*" >&2
    exit 2
}

[ $# -ge 2 ] || usage "an environment and an action are required"
ENVIRONMENT=$1
ACTION=$2
shift 2
case "$ENVIRONMENT" in dev | staging | production) ;; *) usage "unknown environment '$ENVIRONMENT' (dev, staging or production)" ;; esac
case "$ACTION" in deploy | rollback | status) ;; *) usage "unknown action '$ACTION' (deploy, rollback or status)" ;; esac

IMAGE_TAG=""
DRY_RUN=0
BAKE=${DEPLOY_BAKE_SECONDS:-300}
while [ $# -gt 0 ]; do
    case "$1" in
        --image)
            [ $# -ge 2 ] || usage "--image needs a tag"
            IMAGE_TAG=$2
            shift 2
            ;;
        --image=*) IMAGE_TAG=${1#--image=}; shift ;;
        --bake)
            [ $# -ge 2 ] || usage "--bake needs a number of seconds"
            BAKE=$2
            shift 2
            ;;
        --bake=*) BAKE=${1#--bake=}; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        *) usage "unknown argument '$1'" ;;
    esac
done
GRACE=${DEPLOY_STARTUP_GRACE_SECONDS:-600}
PERIOD=${DEPLOY_GATE_PERIOD_SECONDS:-60}
POLL=${DEPLOY_POLL_SECONDS:-15}
for knob in BAKE GRACE PERIOD POLL; do
    [[ ${!knob} =~ ^[0-9]+$ ]] || usage "$knob must be a whole number of seconds, not '${!knob}'"
    # Decimal, whatever its leading zeros (bash would read 090 as octal).
    printf -v "$knob" '%d' "$((10#${!knob}))"
done
[ "$PERIOD" -gt 0 ] || usage "DEPLOY_GATE_PERIOD_SECONDS must be positive"
if [ -n "$IMAGE_TAG" ] && ! [[ $IMAGE_TAG =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
    usage "--image '$IMAGE_TAG' is not an image tag"
fi
[ "$ACTION" = deploy ] || [ -z "$IMAGE_TAG" ] || usage "--image is for deploy only"

TFVARS=infrastructure/environments/$ENVIRONMENT.tfvars
# A value of the environment's tfvars file: `name = "value"` or `name = value`.
tfvar() {
    sed -n -E "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"?([^\"#[:space:]]*)\"?.*/\1/p" "$TFVARS" | head -1
}
REGION=${AWS_REGION:-$(tfvar aws_region)}
[ -n "$REGION" ] || usage "no region: set AWS_REGION or aws_region in $TFVARS"
BLUE_GREEN=$([ "$(tfvar blue_green_deployments)" = true ] && echo 1 || echo 0)

# The names Terraform gives (infrastructure/main.tf, ecs.tf, deploy.tf) and Vigil's
# namespace and service (vigil.example.yaml's publish.cloudwatch).
CLUSTER=watch-together-$ENVIRONMENT
SERVICE=watch-together
FAMILY=watch-together-$ENVIRONMENT
CODEDEPLOY_APP=watch-together-$ENVIRONMENT
CODEDEPLOY_GROUP=watch-together
NAMESPACE=${VIGIL_NAMESPACE:-PlexWatchTogether}
APP_CONTAINER=app
APP_PORT=3000

if [ "$DRY_RUN" = 0 ]; then
    for tool in aws jq; do
        command -v "$tool" >/dev/null 2>&1 || {
            echo "error: $tool is not on PATH (the AWS CLI: pip install awscli, or scripts/dev-setup.sh's .venv/bin; jq: apt-get install jq)" >&2
            exit 2
        }
    done
fi

exec 3>&1
log() { printf '==> %s\n' "$*" >&3; }
fail() {
    echo "error: $*" >&2
    exit 3
}

# An argument as a shell would need it: bare when it can be, else in single quotes.
quote() {
    if [[ $1 =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
        printf '%s' "$1"
    else
        local q=\'\\\'\'
        printf "'%s'" "${1//\'/$q}"
    fi
}

# aws PLACEHOLDER ARGS...: runs `aws ARGS` in the region and prints its output; with
# --dry-run prints the call instead and answers PLACEHOLDER.
aws_() {
    local placeholder=$1
    shift
    if [ "$DRY_RUN" = 1 ]; then
        {
            printf 'aws --region %s' "$(quote "$REGION")"
            local arg
            for arg in "$@"; do printf ' %s' "$(quote "$arg")"; done
            printf '\n'
        } >&3
        printf '%s\n' "$placeholder"
        return 0
    fi
    local out err
    err=$(mktemp)
    if ! out=$(aws --region "$REGION" "$@" 2>"$err"); then
        local why
        why=$(cat "$err")
        rm -f "$err"
        fail "aws $1 $2 failed: $why"
    fi
    rm -f "$err"
    printf '%s\n' "$out"
}

# retry COMMAND...: up to 4 tries, 2, 4 and 8 s apart, each in a subshell so that a
# failed AWS call is a status here rather than the script's end. For the calls that
# undo a release: one throttled call must not leave it serving.
retry() {
    local i
    for i in 1 2 3 4; do
        ("$@") && return 0
        [ "$i" = 4 ] || pause $((2 ** i))
    done
    return 1
}

# In a dry run, lines that say what happens on the branches not taken.
dry_note() { [ "$DRY_RUN" = 0 ] || printf '# %s\n' "$*" >&3; }

now() { date -u +%s; }
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
pause() { [ "$DRY_RUN" = 1 ] || sleep "$1"; }

# `family:revision` of a task definition ARN.
revision_of() { printf '%s\n' "${1##*/}"; }

# ---------------------------------------------------------------------------------
# The service
# ---------------------------------------------------------------------------------

# Checks that the service is deployed the way the tfvars say; prints the task
# definition that takes production traffic.
current_task_definition() {
    local controller td answer
    answer=$(aws_ "$([ "$BLUE_GREEN" = 1 ] && echo CODE_DEPLOY || echo ECS) <the running task definition>" \
        ecs describe-services --cluster "$CLUSTER" --services "$SERVICE" \
        --query "services[0].[deploymentController.type, (taskSets[?status=='PRIMARY'].taskDefinition | [0]) || taskDefinition]" \
        --output text)
    read -r controller td <<<"$answer"
    local want=ECS
    [ "$BLUE_GREEN" = 0 ] || want=CODE_DEPLOY
    [ "$controller" = "$want" ] \
        || fail "service $SERVICE in $CLUSTER is deployed by $controller, but $TFVARS says $want (blue_green_deployments): apply Terraform first"
    [ -n "$td" ] && [ "$td" != None ] || fail "service $SERVICE in $CLUSTER runs no task definition"
    printf '%s\n' "$td"
}

# The tag on each release's revision naming the revision that ran before it: what
# a rollback returns to (not merely the revision below, which may be one Terraform
# registered and never ran).
PREVIOUS_TAG=deploy-previous

# register_release PREVIOUS: registers the release, the family's latest active
# revision with the app container's image tag replaced when --image is given, tagged
# with PREVIOUS. Prints its ARN.
register_release() {
    local previous=$1 base
    if [ "$DRY_RUN" = 1 ]; then
        aws_ "" ecs describe-task-definition --task-definition "$FAMILY" --include TAGS --output json >/dev/null
        aws_ "<the new revision of $FAMILY>" ecs register-task-definition \
            --cli-input-json "<the revision above without its read-only fields${IMAGE_TAG:+, the image tag of container $APP_CONTAINER set to $IMAGE_TAG}>" \
            --tags "<its tags, and $PREVIOUS_TAG=$previous>" \
            --query taskDefinition.taskDefinitionArn --output text
        return 0
    fi
    base=$(aws_ "" ecs describe-task-definition --task-definition "$FAMILY" --include TAGS --output json)
    local input
    input=$(jq --arg tag "$IMAGE_TAG" --arg app "$APP_CONTAINER" '
        .taskDefinition
        | del(.taskDefinitionArn, .revision, .status, .requiresAttributes, .compatibilities,
              .registeredAt, .registeredBy, .deregisteredAt)
        | if $tag == "" then . else
            if any(.containerDefinitions[]; .name == $app) then
              .containerDefinitions |= map(if .name == $app
                then .image = ((.image | sub("@sha256:[0-9a-f]+$"; "") | sub(":[^:/]+$"; "")) + ":" + $tag)
                else . end)
            else error("the task definition has no container \($app)") end
          end' <<<"$base") || fail "cannot make the release's task definition from $FAMILY's latest revision"
    local tags
    tags=$(jq -c --arg k "$PREVIOUS_TAG" --arg v "$previous" \
        '[.tags // [] | .[] | select(.key != $k)] + [{key: $k, value: $v}]' <<<"$base")
    aws_ "" ecs register-task-definition --cli-input-json "$input" --tags "$tags" \
        --query taskDefinition.taskDefinitionArn --output text
}

# The rollback's target from ARN: the revision that ran before it (its
# deploy-previous tag) while that is active, else the active revision below it.
previous_task_definition() {
    local current=$1 arns arn tagged
    tagged=$(aws_ "<the revision that ran before the running one>" ecs describe-task-definition --task-definition "$current" \
        --include TAGS --query "tags[?key=='$PREVIOUS_TAG'].value | [0]" --output text)
    if [ "$DRY_RUN" = 1 ]; then
        printf '%s\n' "$tagged"
        return 0
    fi
    if [ -n "$tagged" ] && [ "$tagged" != None ] \
        && [ "$(aws_ "" ecs describe-task-definition --task-definition "$tagged" --query taskDefinition.status --output text)" = ACTIVE ]; then
        printf '%s\n' "$tagged"
        return 0
    fi
    arns=$(aws_ "" ecs list-task-definitions \
        --family-prefix "$FAMILY" --status ACTIVE --sort DESC --query 'taskDefinitionArns[]' --output text)
    for arn in $arns; do
        if [ "${arn##*:}" -lt "${current##*:}" ]; then
            printf '%s\n' "$arn"
            return 0
        fi
    done
}

# Marks a failed release's revision inactive (its running tasks are not touched):
# the next deploy starts from the revision before it.
retire() {
    log "Deregistering $(revision_of "$1"): the next deploy starts from the revision before it"
    retry aws_ "" ecs deregister-task-definition --task-definition "$1" --query taskDefinition.status --output text >/dev/null \
        || echo "error: could not deregister $1: deregister it by hand (aws ecs deregister-task-definition)" >&2
}

# What to undo if the script ends before the release is judged: set once a release
# serves or is starting (rolling: "roll PREVIOUS RELEASE"; blue-green: "stop
# DEPLOYMENT RELEASE"), cleared when it passed or was undone. An AWS call failing,
# or an interrupt, in between must not leave an unjudged release serving.
UNDO=""
undo_on_exit() {
    local code=$? what previous release
    [ -n "$UNDO" ] || return 0
    read -r what previous release <<<"$UNDO"
    UNDO=""
    trap - EXIT
    echo "error: stopped before the release was judged (exit $code): undoing it" >&2
    case "$what" in
        roll) roll_to "$previous" || echo "error: the rollback to $previous did not complete: $GATE_REASON" >&2 ;;
        stop) stop_deployment "$previous" ;;
    esac
    retire "$release"
    exit 1
}
trap undo_on_exit EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------
# Vigil's verdict
# ---------------------------------------------------------------------------------

# The queries of vigil_deploy_blockers for one task definition: its worst value and
# how many samples (one per task per period) each period holds.
verdict_queries() {
    local rev=$1 period=$2
    jq -cn --arg ns "$NAMESPACE" --arg env "$ENVIRONMENT" --arg svc "$SERVICE" --arg rev "$rev" --argjson p "$period" '
        def q($id; $stat): {Id: $id, ReturnData: true, MetricStat: {Period: $p, Stat: $stat, Metric: {
            Namespace: $ns, MetricName: "vigil_deploy_blockers",
            Dimensions: [{Name: "Environment", Value: $env}, {Name: "Service", Value: $svc},
                         {Name: "TaskDefinition", Value: $rev}]}}};
        [q("worst"; "Maximum"), q("tasks"; "SampleCount")]'
}

# From get-metric-data's answer to "epoch worst samples" lines, ascending.
VERDICT_LINES='
    def epoch: if type == "number" then floor
        else sub("\\.[0-9]+"; "") | sub("(\\+00:00|Z)$"; "Z") | fromdateiso8601 end;
    (.MetricDataResults | map({key: .Id, value: ([.Timestamps, .Values] | transpose
        | map({key: (.[0] | epoch | tostring), value: .[1]}) | from_entries)}) | from_entries) as $r
    | ($r.worst // {}) | keys | sort_by(tonumber)[] as $t
    | "\($t) \($r.worst[$t]) \($r.tasks[$t] // 0)"'

# Prints "epoch worst samples" per period with data in [from, to), ascending.
verdicts() {
    local rev=$1 from=$2 to=$3 period=$4 queries answer
    queries=$(verdict_queries "$rev" "$period")
    answer=$(aws_ "" cloudwatch get-metric-data --start-time "$(iso "$from")" --end-time "$(iso "$to")" \
        --scan-by TimestampAscending --metric-data-queries "$queries" --output json)
    [ "$DRY_RUN" = 1 ] || jq -r "$VERDICT_LINES" <<<"$answer"
}

# gate REVISION TASKS: waits until every one of the TASKS tasks of task definition
# REVISION has reported no blocker for the bake time. A period is full when all TASKS
# reported in it; a report that slipped into the next period counts for its own when
# the next one holds the surplus. Blockers before the first full clean period are the
# tasks starting; after it they fail the gate at once. A period short of reports, or
# without any, breaks the streak (the last one may still be filling: it is left for
# the next poll). No clean bake within the startup grace plus the bake fails the
# gate. Returns 0 passed, 1 failed (the reason in GATE_REASON).
GATE_REASON=""
gate() {
    local rev=$1 tasks=$2 started
    started=$(now)
    local deadline=$((started + GRACE + BAKE))
    local from=$(((started + PERIOD - 1) / PERIOD * PERIOD))
    log "Gate: $rev's $tasks task(s) must report /status ok and no critical alert (vigil_deploy_blockers = 0) for ${BAKE}s"
    if [ "$DRY_RUN" = 1 ]; then
        verdicts "$rev" "$from" "$((from + BAKE + PERIOD))" "$PERIOD" >/dev/null
        dry_note "(repeated every ${POLL}s until ${BAKE}s of periods with every task reporting 0, or ${GRACE}s of startup grace plus the bake have passed)"
        return 0
    fi
    while :; do
        local t_now to
        t_now=$(now)
        to=$((t_now / PERIOD * PERIOD))
        if [ "$to" -gt "$from" ]; then
            local lines t w n
            local -a ts=() worst=() samples=()
            lines=$(verdicts "$rev" "$from" "$to" "$PERIOD") || lines=""
            while read -r t w n; do
                [ -n "$t" ] || continue
                ts+=("$t")
                worst+=("${w%.*}")
                samples+=("${n%.*}")
            done <<<"$lines"
            local k expect=$from clean_since="" clean_end="" seen_clean=0 carry=0
            for k in "${!ts[@]}"; do
                t=${ts[k]}
                if [ "$t" -gt "$expect" ]; then
                    clean_since=""
                    carry=0
                fi
                expect=$((t + PERIOD))
                if [ "${worst[k]}" != 0 ]; then
                    if [ "$seen_clean" = 1 ]; then
                        GATE_REASON="$rev reported ${worst[k]} blocker(s) at $(iso "$t") after reporting clean: a probe failing or a critical alert firing (see /status on the new tasks)"
                        return 1
                    fi
                    clean_since=""
                    carry=0
                    continue
                fi
                n=$((samples[k] + carry))
                carry=0
                if [ "$n" -lt "$tasks" ]; then
                    local next=$((k + 1))
                    if [ "$next" -lt "${#ts[@]}" ] && [ "${ts[next]}" = "$expect" ] \
                        && [ $((samples[next] - tasks)) -ge $((tasks - n)) ]; then
                        # Reports that slipped into the next period: it carries them.
                        carry=$((n - tasks))
                    elif [ "$next" -ge "${#ts[@]}" ]; then
                        break # the last period may still be filling
                    else
                        clean_since=""
                        continue
                    fi
                else
                    carry=$((n - tasks))
                fi
                seen_clean=1
                [ -n "$clean_since" ] || clean_since=$t
                clean_end=$expect
            done
            if [ -n "$clean_since" ]; then
                if [ $((clean_end - clean_since)) -ge "$BAKE" ]; then
                    log "Gate passed: $rev clean from $(iso "$clean_since") to $(iso "$clean_end"), every task reporting"
                    return 0
                fi
                log "Gate: clean for $((clean_end - clean_since))s of ${BAKE}s"
            else
                log "Gate: waiting for $rev's first full clean period"
            fi
        fi
        if [ "$t_now" -ge "$deadline" ]; then
            GATE_REASON="$rev was not clean for ${BAKE}s within $((GRACE + BAKE))s of the gate's start (its tasks did not all report, or kept reporting blockers)"
            return 1
        fi
        sleep "$POLL"
    done
}

# ---------------------------------------------------------------------------------
# Rolling (ECS deployments)
# ---------------------------------------------------------------------------------

# Updates the service to ARN and waits for its rollout.
roll_to() {
    local td=$1
    retry aws_ "" ecs update-service --cluster "$CLUSTER" --service "$SERVICE" --task-definition "$td" \
        --query service.taskDefinition --output text >/dev/null \
        || { GATE_REASON="ecs update-service to $(revision_of "$td") failed 4 times"; return 1; }
    log "Waiting for the rollout of $(revision_of "$td")"
    local deadline=$(($(now) + GRACE)) state
    while :; do
        state=$(aws_ "$td COMPLETED" ecs describe-services --cluster "$CLUSTER" --services "$SERVICE" \
            --query "services[0].[taskDefinition, (deployments[?status=='PRIMARY'].rolloutState | [0]), length(deployments)]" \
            --output text)
        read -r svc_td rollout count <<<"$state"
        if [ "$svc_td" = "$td" ] && [ "$rollout" = COMPLETED ] && [ "${count:-1}" -le 1 ] || [ "$DRY_RUN" = 1 ]; then
            dry_note "(repeated every ${POLL}s until the PRIMARY deployment of $(revision_of "$td") is COMPLETED and alone)"
            return 0
        fi
        if [ "$rollout" = FAILED ]; then
            GATE_REASON="ECS rolled $(revision_of "$td") back: its tasks failed to start or their health checks (the circuit breaker)"
            return 1
        fi
        [ "$(now)" -lt "$deadline" ] || { GATE_REASON="the rollout of $(revision_of "$td") did not complete within ${GRACE}s"; return 1; }
        sleep "$POLL"
    done
}

desired_count() {
    aws_ "<the service's desired count>" ecs describe-services --cluster "$CLUSTER" --services "$SERVICE" \
        --query 'services[0].desiredCount' --output text
}

rolling_deploy() {
    local previous release tasks
    previous=$(current_task_definition)
    log "Registering the release of $FAMILY${IMAGE_TAG:+ with $APP_CONTAINER:$IMAGE_TAG}"
    release=$(register_release "$previous")
    tasks=$(desired_count)
    log "Rolling $SERVICE in $CLUSTER from $(revision_of "$previous") to $(revision_of "$release")"
    UNDO="roll $previous $release"
    if roll_to "$release" && gate "$(revision_of "$release")" "$tasks"; then
        UNDO=""
        dry_note "if the rollout or the gate fails: the service is updated back to <the running task definition> and the release deregistered"
        log "Deployed $(revision_of "$release")"
        return 0
    fi
    UNDO=""
    echo "error: the release failed: $GATE_REASON" >&2
    log "Rolling back to $(revision_of "$previous")"
    roll_to "$previous" || echo "error: the rollback did not complete: $GATE_REASON" >&2
    retire "$release"
    return 1
}

rolling_rollback() {
    local current previous
    current=$(current_task_definition)
    previous=$(previous_task_definition "$current")
    [ -n "$previous" ] && [ "$previous" != None ] || fail "$FAMILY has no active revision before $(revision_of "$current") to roll back to"
    log "Rolling $SERVICE in $CLUSTER back from $(revision_of "$current") to $(revision_of "$previous")"
    roll_to "$previous" || { echo "error: the rollback did not complete: $GATE_REASON" >&2; return 1; }
    retire "$current"
    log "Rolled back to $(revision_of "$previous")"
}

# ---------------------------------------------------------------------------------
# Blue-green (CodeDeploy)
# ---------------------------------------------------------------------------------

# The deployment of the group that is not finished, if any.
open_deployment() {
    aws_ "<a deployment not yet finished, if any>" deploy list-deployments --application-name "$CODEDEPLOY_APP" \
        --deployment-group-name "$CODEDEPLOY_GROUP" --include-only-statuses Created Queued InProgress Ready \
        --query 'deployments[0]' --output text
}

# deployment_status ID: its status (Created, InProgress, Ready, Succeeded, Failed,
# Stopped...).
deployment_status() {
    aws_ "${2:-Ready}" deploy get-deployment --deployment-id "$1" --query deploymentInfo.status --output text
}

# Creates a blue/green deployment of ARN; prints its id.
create_deployment() {
    local td=$1 description=$2 appspec revision
    # AppSpec's version is written 0.0, as CodeDeploy documents it (jq would print 0).
    appspec=$(printf '{"version":0.0,"Resources":[{"TargetService":{"Type":"AWS::ECS::Service","Properties":{"TaskDefinition":%s,"LoadBalancerInfo":{"ContainerName":"%s","ContainerPort":%d}}}}]}' \
        "$(jq -n --arg td "$td" '$td')" "$APP_CONTAINER" "$APP_PORT")
    revision=$(jq -cn --arg content "$appspec" '{revisionType: "AppSpecContent", appSpecContent: {content: $content}}')
    aws_ "<the deployment's id>" deploy create-deployment --application-name "$CODEDEPLOY_APP" \
        --deployment-group-name "$CODEDEPLOY_GROUP" --revision "$revision" --description "$description" \
        --query deploymentId --output text
}

# Waits until deployment ID holds its replacement task set ready without production
# traffic (Ready).
await_ready() {
    local id=$1 deadline=$(($(now) + GRACE)) status
    while :; do
        status=$(deployment_status "$id")
        case "$status" in
            Ready)
                dry_note "(repeated every ${POLL}s until Ready: the replacement task set runs behind the test listener)"
                return 0
                ;;
            Failed | Stopped)
                GATE_REASON="CodeDeploy deployment $id is $status before traffic shifted: $(aws_ "" deploy get-deployment --deployment-id "$id" --query 'deploymentInfo.errorInformation.message' --output text)"
                return 1
                ;;
        esac
        [ "$(now)" -lt "$deadline" ] || { GATE_REASON="deployment $id was not Ready within ${GRACE}s (still $status)"; return 1; }
        sleep "$POLL"
    done
}

# The replacement task set of ARN: "id desired" (computedDesiredCount).
task_set_of() {
    aws_ "<task-set-id> <desired-count>" ecs describe-services --cluster "$CLUSTER" --services "$SERVICE" \
        --query "services[0].taskSets[?taskDefinition=='$1'] | [0].[id, computedDesiredCount]" --output text
}

# Waits until task definition ARN takes production traffic (its task set PRIMARY).
await_primary() {
    local td=$1 deadline=$(($(now) + GRACE)) primary
    while :; do
        primary=$(aws_ "$td" ecs describe-services --cluster "$CLUSTER" --services "$SERVICE" \
            --query "services[0].taskSets[?status=='PRIMARY'].taskDefinition | [0]" --output text)
        if [ "$(revision_of "$primary")" = "$(revision_of "$td")" ]; then
            dry_note "(repeated every ${POLL}s until the task set of $(revision_of "$td") is PRIMARY: production traffic is on it)"
            return 0
        fi
        [ "$(now)" -lt "$deadline" ] || { GATE_REASON="$(revision_of "$td") did not take production traffic within ${GRACE}s"; return 1; }
        sleep "$POLL"
    done
}

# stop_deployment ID: stops it with rollback (CodeDeploy returns production traffic to
# the original task set and removes the replacement), retried.
stop_deployment() {
    retry aws_ "" deploy stop-deployment --deployment-id "$1" --auto-rollback-enabled >/dev/null \
        || echo "error: could not stop CodeDeploy deployment $1: stop it in the console (CodeDeploy stops it itself after deployment_ready_wait_minutes)" >&2
}

blue_green_deploy() {
    local previous open release id task_set tasks answer
    previous=$(current_task_definition)
    open=$(open_deployment)
    if [ "$DRY_RUN" = 0 ] && [ -n "$open" ] && [ "$open" != None ]; then
        echo "error: CodeDeploy deployment $open is not finished (traffic may still be shifting, or the previous task set kept for rollback): wait for it, or run '$0 $ENVIRONMENT rollback'" >&2
        return 1
    fi
    dry_note "if a deployment is not finished: stop here, exit 1"
    log "Registering the release of $FAMILY${IMAGE_TAG:+ with $APP_CONTAINER:$IMAGE_TAG}"
    release=$(register_release "$previous")
    log "Blue-green: $(revision_of "$previous") serves; starting $(revision_of "$release") beside it, without production traffic"
    id=$(create_deployment "$release" "scripts/deploy.sh: $(revision_of "$previous") -> $(revision_of "$release"), gated by Vigil")
    UNDO="stop $id $release"
    log "CodeDeploy deployment $id"
    if ! await_ready "$id"; then
        UNDO=""
        echo "error: the release failed: $GATE_REASON" >&2
        stop_deployment "$id"
        retire "$release"
        return 1
    fi
    answer=$(task_set_of "$release")
    read -r task_set tasks <<<"$answer"
    # Until ECS has scaled the task set, its count may read 0: the service's then.
    [[ $tasks =~ ^[1-9][0-9]*$ ]] || [ "$DRY_RUN" = 1 ] || tasks=$(desired_count)
    if gate "$(revision_of "$release")" "$tasks"; then
        log "Shifting production traffic to $(revision_of "$release") (task set $task_set)"
        aws_ "" deploy continue-deployment --deployment-id "$id" --deployment-wait-type READY_WAIT >/dev/null
        UNDO=""
        await_primary "$release" || { echo "error: $GATE_REASON" >&2; return 1; }
        dry_note "if the gate fails: aws deploy stop-deployment --deployment-id <the deployment's id> --auto-rollback-enabled, then the release is deregistered; exit 1"
        log "Deployed $(revision_of "$release"); $(revision_of "$previous") is kept for '$0 $ENVIRONMENT rollback' until CodeDeploy terminates it"
        return 0
    fi
    UNDO=""
    echo "error: the gate failed: $GATE_REASON" >&2
    log "Stopping deployment $id: CodeDeploy returns to $(revision_of "$previous")"
    stop_deployment "$id"
    retire "$release"
    return 1
}

# The original and the release of a deployment this script created, from its
# description ("scripts/deploy.sh...: ORIGINAL -> RELEASE..."); nothing otherwise.
deployment_pair() {
    local description
    description=$(aws_ "scripts/deploy.sh: <original-revision> -> <release-revision>" deploy get-deployment \
        --deployment-id "$1" --query deploymentInfo.description --output text)
    if [[ $description =~ ^scripts/deploy\.sh[^:]*:\ ([^ ]+)\ -\>\ ([^ ,]+) ]]; then
        printf '%s %s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
    fi
}

blue_green_rollback() {
    local current open previous id pair original release
    current=$(current_task_definition)
    open=$(open_deployment)
    if [ -n "$open" ] && [ "$open" != None ]; then
        # Before the shift the original serves and the release waits; after it, the
        # release serves and the original is kept. Stopping with rollback returns
        # traffic to the original either way.
        pair=$(deployment_pair "$open")
        read -r original release <<<"$pair"
        log "Stopping deployment $open: CodeDeploy returns traffic to ${original:-the original task set}"
        stop_deployment "$open"
        if [ -n "$original" ]; then
            await_primary "$original" || { echo "error: $GATE_REASON" >&2; return 1; }
            retire "$release"
            log "Rolled back: $(revision_of "$original") takes production traffic"
        else
            log "Deployment $open was not made by this script: CodeDeploy returns traffic to its original task set"
        fi
        dry_note "if no deployment is open: a new deployment of the revision that ran before, continued as soon as it is Ready (no bake)"
        [ "$DRY_RUN" = 0 ] && return 0
    fi
    previous=$(previous_task_definition "$current")
    [ -n "$previous" ] && [ "$previous" != None ] || fail "$FAMILY has no active revision before $(revision_of "$current") to roll back to"
    log "Blue-green rollback: deploying $(revision_of "$previous") again, no bake (a known version)"
    id=$(create_deployment "$previous" "scripts/deploy.sh rollback: $(revision_of "$current") -> $(revision_of "$previous")")
    await_ready "$id" || { echo "error: the rollback failed: $GATE_REASON" >&2; return 1; }
    aws_ "" deploy continue-deployment --deployment-id "$id" --deployment-wait-type READY_WAIT >/dev/null
    await_primary "$previous" || { echo "error: $GATE_REASON" >&2; return 1; }
    retire "$current"
    log "Rolled back to $(revision_of "$previous")"
}

# ---------------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------------

# Vigil's verdict on task definition REVISION over the last 5 minutes. The window runs
# a period past now: a report made in the second this reads up to, or by a sidecar
# whose clock runs ahead of this machine's, is a report (CloudWatch's EndTime excludes).
verdict_line() {
    [ "$DRY_RUN" = 0 ] || { verdicts "$1" 0 1 60 >/dev/null; return 0; }
    local to from lines
    from=$(($(now) - 300))
    to=$((from + 300 + PERIOD))
    lines=$(verdicts "$1" "$from" "$to" "$PERIOD")
    if [ -z "$lines" ]; then
        echo "no report from Vigil in 5 min"
        return 0
    fi
    local t worst samples
    read -r t worst samples < <(tail -1 <<<"$lines")
    local max
    max=$(awk '{ if ($2 > m) m = $2 } END { print m + 0 }' <<<"$lines")
    if [ "${worst%.*}" = 0 ] && [ "$max" = 0 ]; then
        echo "ok (last report $(iso "$t"), ${samples%.*} task(s); no blocker in 5 min)"
    elif [ "${worst%.*}" = 0 ]; then
        echo "ok now (last report $(iso "$t")); up to $max blocker(s) in 5 min"
    else
        echo "BLOCKED: ${worst%.*} blocker(s) at $(iso "$t") (a probe failing or a critical alert firing)"
    fi
}

status() {
    local service
    service=$(aws_ '{"services":[]}' ecs describe-services --cluster "$CLUSTER" --services "$SERVICE" --output json)
    [ "$DRY_RUN" = 0 ] || { verdict_line "<each task definition>"; return 0; }
    local kind
    kind=$(jq -r '.services[0].deploymentController.type // "ECS"' <<<"$service")
    echo "$ENVIRONMENT: service $SERVICE in $CLUSTER ($REGION), $([ "$kind" = CODE_DEPLOY ] && echo blue-green through CodeDeploy || echo rolling), desired $(jq -r '.services[0].desiredCount' <<<"$service")"
    local rows
    if [ "$kind" = CODE_DEPLOY ]; then
        rows=$(jq -r '.services[0].taskSets[]? | "\(.status)\t\(.taskDefinition)\t\(.runningCount)/\(.computedDesiredCount) running\ttask set \(.id), \(.loadBalancers[0].targetGroupArn // "-" | split("/")[1] // "-")"' <<<"$service")
    else
        rows=$(jq -r '.services[0] as $s | .services[0].deployments[]? | "\(.status)\t\(if .status == "PRIMARY" then $s.taskDefinition else .taskDefinition end)\t\(.runningCount)/\(.desiredCount) running\tdeployment \(.id), \(.rolloutState // "-")"' <<<"$service")
    fi
    [ -n "$rows" ] || echo "  nothing runs"
    local state td counts what
    while IFS=$'\t' read -r state td counts what; do
        [ -n "$state" ] || continue
        printf '  %-8s %-36s %-14s %s\n' "$state" "$(revision_of "$td")" "$counts" "$what"
        printf '           Vigil: %s\n' "$(verdict_line "$(revision_of "$td")")"
    done <<<"$rows"
    if [ "$kind" = CODE_DEPLOY ]; then
        local open
        open=$(open_deployment)
        if [ -n "$open" ] && [ "$open" != None ]; then
            echo "  CodeDeploy deployment $open: $(deployment_status "$open")"
        fi
    fi
}

case "$ACTION:$BLUE_GREEN" in
    deploy:1) blue_green_deploy ;;
    deploy:0) rolling_deploy ;;
    rollback:1) blue_green_rollback ;;
    rollback:0) rolling_rollback ;;
    status:*) status ;;
esac
