"""Structure tests of the Terraform in infrastructure/, over the HCL parsed by python-hcl2.

Run by scripts/check-infrastructure.sh (which puts python-hcl2 on PYTHONPATH; see there
why it is not simply installed into the venv), or by hand:

    PYTHONPATH=.venv-iac/python-hcl2 .venv-iac/bin/python -m unittest discover -s infrastructure/tests

The container definitions are kept in `locals.container_definitions` as HCL objects and
jsonencode'd into the task definition, so they are checked here as parsed HCL rather
than as a JSON string. References stay as Terraform wrote them (`${var.environment}`);
the tests follow them where the property depends on it (the task role's policy document,
the secrets' parameters, the dashboards' files).

VIGIL_INFRA_DIR points the tests at another copy of infrastructure/ (to check that they
fail on a broken copy).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import unittest
from collections import defaultdict
from pathlib import Path

try:
    import hcl2
    from hcl2.utils import SerializationOptions
except ImportError as error:  # checkov's bc-python-hcl2 also provides `hcl2`, without this API
    raise SystemExit(
        f"python-hcl2 (>= 8) is needed, with its directory first on PYTHONPATH: {error}"
    ) from error

INFRA = Path(os.environ.get("VIGIL_INFRA_DIR", Path(__file__).resolve().parents[1]))
REPO = Path(__file__).resolve().parents[2]
ENVIRONMENTS = ("dev", "staging", "production")
DASHBOARDS = ("application", "infrastructure", "alerts")
ALARM_SUFFIXES = {
    "vigil-heartbeat",
    "alb-5xx-rate",
    "alb-target-response-time",
    "alb-unhealthy-hosts",
    "rds-cpu",
    "rds-free-storage",
    "rds-connections",
    "redis-memory",
    "redis-evictions",
    "restart-after-rotation-failed",
}
TF_FILES = {
    "main.tf",
    "secrets.tf",
    "audit.tf",
    "variables.tf",
    "outputs.tf",
    "database.tf",
    "ecs.tf",
    "alb.tf",
    "iam.tf",
    "monitoring.tf",
    "security.tf",
    "deploy.tf",
}

_OPTIONS = SerializationOptions(
    strip_string_quotes=True, with_comments=False, explicit_blocks=False
)


def parse(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        return hcl2.load(handle, serialization_options=_OPTIONS)


def ref(expression: str) -> str:
    """`${aws_sns_topic.critical.arn}` -> `aws_sns_topic.critical.arn`."""
    match = re.fullmatch(r"\$\{(.*)\}", expression.strip(), re.S)
    if not match:
        raise AssertionError(f"expected a single ${{...}} reference, got {expression!r}")
    return match.group(1).strip()


class Model:
    """Every block of infrastructure/*.tf, merged across files."""

    def __init__(self, directory: Path):
        self.resources: dict[str, dict[str, dict]] = defaultdict(dict)
        self.data: dict[str, dict[str, dict]] = defaultdict(dict)
        self.variables: dict[str, dict] = {}
        self.locals: dict[str, object] = {}
        self.outputs: dict[str, dict] = {}
        self.terraform: list[dict] = []
        self.text: dict[str, str] = {}
        for path in sorted(directory.glob("*.tf")):
            self.text[path.name] = path.read_text(encoding="utf-8")
            document = parse(path)
            for kind, target in (("resource", self.resources), ("data", self.data)):
                for block in document.get(kind, []):
                    for block_type, by_name in block.items():
                        for name, body in by_name.items():
                            if name in target[block_type]:
                                raise AssertionError(f"{block_type}.{name} is declared twice")
                            target[block_type][name] = body
            for block in document.get("variable", []):
                self.variables.update(block)
            for block in document.get("locals", []):
                self.locals.update(block)
            for block in document.get("output", []):
                self.outputs.update(block)
            self.terraform.extend(document.get("terraform", []))

    def value(self, expression):
        """A literal as it is; `${local.x}` as the local's literal value."""
        if isinstance(expression, str) and re.fullmatch(r"\$\{local\.\w+\}", expression):
            return self.locals[ref(expression).removeprefix("local.")]
        return expression

    def resolve(self, expression: str):
        """Follows `${local.x}` and `${data.aws_iam_policy_document.x.json}`."""
        target = ref(expression)
        if target.startswith("local."):
            return self.locals[target.removeprefix("local.")]
        match = re.fullmatch(r"data\.aws_iam_policy_document\.(\w+)\.json", target)
        if match:
            return self.data["aws_iam_policy_document"][match.group(1)]
        raise AssertionError(f"cannot follow {expression!r}")


MODEL = Model(INFRA)


# The RDS-managed master secret, and its current password as an ECS secret names it.
MASTER_SECRET = "${aws_db_instance.main.master_user_secret[0].secret_arn}"
MASTER_PASSWORD = "${aws_db_instance.main.master_user_secret[0].secret_arn}:password::"


def containers() -> dict[str, dict]:
    definition = MODEL.resources["aws_ecs_task_definition"]["main"]["container_definitions"]
    match = re.fullmatch(r"\$\{jsonencode\((local\.\w+)\)\}", definition.strip())
    assert match, f"container_definitions should be jsonencode(local....), got {definition!r}"
    listed = MODEL.resolve("${" + match.group(1) + "}")
    return {container["name"]: container for container in listed}


def env_of(container: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("environment", [])}


def secrets_of(container: dict) -> dict[str, str]:
    items = [MODEL.value(item) for item in container.get("secrets", [])]
    return {item["name"]: item["valueFrom"] for item in items}


def tfvars(environment: str) -> dict:
    return parse(INFRA / "environments" / f"{environment}.tfvars")


def resolve_name(value: str) -> str:
    """A name as Terraform writes it, with `<env>` for the environment."""
    for local in ("ssm_prefix", "ecs_log_group_name", "name", "service"):
        value = value.replace("${local.%s}" % local, str(MODEL.locals[local]))
    return value.replace("${var.environment}", "<env>")


NAME_ATTRIBUTES = ("name", "name_prefix", "identifier", "family", "replication_group_id", "alarm_name", "dashboard_name")


def terraform_names() -> set[str]:
    """Every resource name of infrastructure/*.tf (for_each keys expanded), with `<env>`,
    and the replication group's member ids (`<id>-001`, ...)."""
    names = set()
    for by_name in MODEL.resources.values():
        for body in by_name.values():
            each = MODEL.value(body.get("for_each"))
            if isinstance(each, dict):
                keys = list(each)
            elif isinstance(each, str) and "toset([" in each:
                keys = re.findall(r'"([^"]+)"', each)
            else:
                keys = []
            for attribute in NAME_ATTRIBUTES:
                value = body.get(attribute)
                source = body.get("for_each")
                if value == "${each.value}" and isinstance(source, str) and source.startswith("${local."):
                    # Names from a local map (the target groups): its literal values.
                    local = str(MODEL.locals[source[len("${local."):-1]])
                    names |= {resolve_name(v) for v in re.findall(r'"(\$\{local\.name\}[^"]*)"', local)}
                elif isinstance(value, str):
                    value = resolve_name(value)
                    names |= {value.replace("${each.key}", key) for key in keys} if "${each.key}" in value else {value}
    assert 'format("%s-%03d", local.name, i + 1)' in MODEL.locals["cache_member_ids"]
    nodes = max(int(count) for count in re.findall(r"\d+", MODEL.locals["cache_node_count"]))
    names |= {f"{resolve_name(MODEL.locals['name'])}-{i:03d}" for i in range(1, nodes + 1)}
    return names


class Layout(unittest.TestCase):
    def test_parser_is_python_hcl2(self):
        self.assertGreaterEqual(int(importlib.metadata.version("python-hcl2").split(".")[0]), 8)

    def test_files_are_exactly_the_runbooks_layout(self):
        self.assertEqual({p.name for p in INFRA.glob("*.tf")}, TF_FILES)
        self.assertEqual(
            {p.name for p in (INFRA / "environments").iterdir()},
            {f"{e}.tfvars" for e in ENVIRONMENTS},
        )
        self.assertTrue((INFRA / "README.md").is_file())

    def test_versions_are_pinned_in_main_tf(self):
        terraform = [t for t in MODEL.terraform if "required_providers" in t]
        self.assertEqual(len(terraform), 1)
        self.assertIn("required_version", terraform[0])
        providers = {}
        for block in terraform[0]["required_providers"]:
            providers.update(block)
        self.assertEqual(providers["aws"]["source"], "hashicorp/aws")
        self.assertRegex(providers["aws"]["version"], r"^~> 5\.\d+$")
        # Only the AWS provider: nothing else can be had where this is planned
        # (scripts/plan-infrastructure.sh), and Secrets Manager makes the passwords.
        self.assertEqual(set(providers), {"aws"})
        self.assertFalse([t for t in MODEL.resources if t.startswith("random_")])
        self.assertIn("required_providers", MODEL.text["main.tf"])


class TaskDefinition(unittest.TestCase):
    def setUp(self):
        self.containers = containers()
        self.app = self.containers["app"]
        self.vigil = self.containers["vigil"]

    def test_exactly_the_app_and_vigil(self):
        self.assertEqual(set(self.containers), {"app", "vigil"})
        task = MODEL.resources["aws_ecs_task_definition"]["main"]
        self.assertEqual(task["requires_compatibilities"], ["FARGATE"])
        self.assertEqual(task["network_mode"], "awsvpc")
        self.assertNotEqual(task["task_role_arn"], task["execution_role_arn"])

    def test_app(self):
        self.assertIs(self.app["essential"], True)
        self.assertEqual(self.app["image"], "${var.app_image}")
        self.assertEqual([MODEL.value(p["containerPort"]) for p in self.app["portMappings"]], [3000])
        env = env_of(self.app)
        self.assertEqual(env["LOG_FORMAT"], "json")
        self.assertIn(env["PORT"], ("3000", "${tostring(local.app_port)}"))
        self.assertEqual(set(secrets_of(self.app)), {"DATABASE_URL", "DATABASE_PASSWORD", "REDIS_URL"})

    def test_vigil_is_not_essential_and_that_is_documented(self):
        self.assertIs(self.vigil["essential"], False)
        self.assertEqual(self.vigil["image"], "${var.vigil_image}")
        self.assertIn(
            {"containerName": "app", "condition": "START"}, self.vigil["dependsOn"]
        )
        # The reason sits next to the setting and in the README.
        self.assertRegex(MODEL.text["ecs.tf"], r"essential = false, on purpose")
        readme = (INFRA / "README.md").read_text(encoding="utf-8")
        self.assertRegex(readme, r"essential\s*=\s*false")
        self.assertIn("vigil_heartbeat", readme)
        self.assertRegex(readme, r"(?i)must not take .{0,40}down")

    def test_both_have_read_only_root_and_their_own_health_check(self):
        commands = {
            "app": ["CMD", "/usr/local/bin/watch-together", "healthcheck"],
            "vigil": ["CMD", "/usr/local/bin/vigil", "healthcheck"],
        }
        for name, container in self.containers.items():
            with self.subTest(container=name):
                self.assertIs(container["readonlyRootFilesystem"], True)
                self.assertEqual(container["healthCheck"]["command"], commands[name])
                log = container["logConfiguration"]
                self.assertEqual(log["logDriver"], "awslogs")
                self.assertEqual(log["options"]["awslogs-group"], "${aws_cloudwatch_log_group.ecs.name}")

    def test_vigil_state_is_the_only_writable_mount(self):
        self.assertEqual(
            self.vigil["mountPoints"],
            [{"sourceVolume": "vigil-state", "containerPath": "/var/lib/vigil", "readOnly": False}],
        )
        volumes = MODEL.resources["aws_ecs_task_definition"]["main"]["volume"]
        self.assertEqual(volumes, [{"name": "vigil-state"}])  # task storage: no host path, no EFS
        self.assertNotIn("mountPoints", self.app)
        self.assertEqual(env_of(self.vigil)["VIGIL_STATE_DIR"], "/var/lib/vigil")

    def test_vigil_environment(self):
        env = env_of(self.vigil)
        expected = {
            "VIGIL_CONFIG": "/etc/vigil/vigil.yaml",
            "VIGIL_ENVIRONMENT": "${var.environment}",
            "VIGIL_PUBLISH_MODE": "api",
            "VIGIL_SNS_CRITICAL_TOPIC_ARN": "${aws_sns_topic.critical.arn}",
            "VIGIL_SNS_WARNING_TOPIC_ARN": "${aws_sns_topic.warning.arn}",
            "AWS_REGION": "${var.aws_region}",
            "LOG_FORMAT": "json",
        }
        for name, value in expected.items():
            with self.subTest(variable=name):
                self.assertEqual(env.get(name), value)
        self.assertRegex(env["VIGIL_LISTEN"], r"^0\.0\.0\.0:(9464|\$\{local\.vigil_port\})$")
        self.assertRegex(env["APP_URL"], r"^http://127\.0\.0\.1:(3000|\$\{local\.app_port\})$")
        self.assertEqual([MODEL.value(p["containerPort"]) for p in self.vigil["portMappings"]], [9464])
        # Nothing secret in plain environment variables.
        for name in env:
            self.assertNotRegex(name, r"(DATABASE|REDIS|HEARTBEAT)_URL|TOKEN|PASSWORD|SECRET", msg=f"{name} belongs in secrets")
        self.assertNotIn("DATABASE_URL", env)

    def test_vigil_secrets_come_from_secure_ssm_parameters(self):
        secrets = secrets_of(self.vigil)
        self.assertEqual(
            set(secrets),
            {
                "DATABASE_URL",
                "DATABASE_PASSWORD",
                "REDIS_URL",
                "VIGIL_LEASE_REDIS_URL",
                "VIGIL_HEARTBEAT_URL",
                "VIGIL_API_TOKEN",
            },
        )
        # The database password is the RDS-managed secret's current `password` key:
        # RDS rotates it, so it is read at each task's start, never baked into a URL.
        for container in (self.app, self.vigil):
            self.assertEqual(secrets_of(container)["DATABASE_PASSWORD"], MASTER_PASSWORD)
        parameters = MODEL.resources["aws_ssm_parameter"]
        for name, value_from in {**secrets, **secrets_of(self.app)}.items():
            if name == "DATABASE_PASSWORD":
                continue
            with self.subTest(secret=name):
                match = re.fullmatch(r"aws_ssm_parameter\.(\w+)\.arn", ref(value_from))
                self.assertIsNotNone(match, value_from)
                parameter = parameters[match.group(1)]
                self.assertEqual(parameter["type"], "SecureString")
                self.assertEqual(parameter["key_id"], "${aws_kms_key.secrets.arn}")
        self.assertIn("rediss://", parameters["redis_url"]["value"])
        self.assertEqual(secrets["VIGIL_LEASE_REDIS_URL"], secrets["REDIS_URL"])
        database_url = parameters["database_url"]["value"]
        self.assertNotIn("password", database_url)
        self.assertRegex(database_url, r'^\$\{format\("postgres://%s@%s:%d/%s\?sslmode=require"')
        self.assertIn('local.generated["redis-auth-token"]', parameters["redis_url"]["value"])

    def test_every_variable_the_shipped_config_needs_is_given(self):
        # The image carries vigil.example.yaml and alerts/routing.yaml. A ${VAR} without
        # a default that the task does not set would stop Vigil at start, and one whose
        # default is meant for a laptop (127.0.0.1, .dev/) would probe the wrong thing:
        # the task sets every one.
        repo = Path(__file__).resolve().parents[2]
        needed = set()
        for f in ("vigil.example.yaml", "alerts/routing.yaml"):
            text = (repo / f).read_text()
            body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
            needed |= set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)(?::-[^}]*)?\}", body))
        self.assertIn("VIGIL_SNS_CRITICAL_TOPIC_ARN", needed, "the scan finds the routing file's variables")
        self.assertIn("DATABASE_URL", needed, "the scan finds variables with defaults")
        given = set(env_of(self.vigil)) | set(secrets_of(self.vigil))
        self.assertEqual(needed - given, set(), "set in the vigil container of ecs.tf")

    def test_operator_set_parameters_are_never_overwritten(self):
        parameters = MODEL.resources["aws_ssm_parameter"]
        heartbeat = parameters["vigil_heartbeat_url"]
        self.assertEqual(heartbeat["lifecycle"], [{"ignore_changes": ["value"]}])
        # The API token's placeholder is written once and never read back: no value in
        # the state for a plan to restore over an operator's token.
        token = parameters["vigil_api_token"]
        self.assertNotIn("value", token)
        self.assertEqual(
            token["value_wo"],
            "${ephemeral.aws_secretsmanager_random_password.vigil_api_token_placeholder.random_password}",
        )
        self.assertEqual(token["value_wo_version"], 1)
        for name in ("database_url", "redis_url"):
            self.assertNotIn("lifecycle", parameters[name])

    def test_vigil_is_not_behind_the_load_balancer(self):
        service = MODEL.resources["aws_ecs_service"]["main"]
        balancers = service["load_balancer"]
        self.assertEqual(len(balancers), 1)
        self.assertEqual(balancers[0]["container_name"], "app")
        target_group = MODEL.resources["aws_lb_target_group"]["app"]
        self.assertEqual(target_group["health_check"][0]["path"], "/api/health")
        self.assertEqual(target_group["target_type"], "ip")
        self.assertEqual(target_group["stickiness"][0]["type"], "lb_cookie")
        ingress = MODEL.resources["aws_vpc_security_group_ingress_rule"]
        tasks_ports = {
            (rule["from_port"], rule["to_port"])
            for rule in ingress.values()
            if rule["security_group_id"] == "${aws_security_group.tasks.id}"
        }
        self.assertEqual(tasks_ports, {(3000, 3000)})

    def test_service_rolls_back_failed_deployments_and_scales(self):
        service = MODEL.resources["aws_ecs_service"]["main"]
        # Rolling environments keep the circuit breaker; CodeDeploy takes none.
        breaker = service["dynamic"][0]["deployment_circuit_breaker"]
        self.assertEqual(breaker["for_each"], "${var.blue_green_deployments ? [] : [true]}")
        self.assertEqual(breaker["content"], [{"enable": True, "rollback": True}])
        self.assertEqual(service["network_configuration"][0]["assign_public_ip"], False)
        target = MODEL.resources["aws_appautoscaling_target"]["ecs"]
        self.assertEqual(target["min_capacity"], "${var.ecs_min_tasks}")
        self.assertEqual(target["max_capacity"], "${var.ecs_max_tasks}")
        metrics = {
            policy["target_tracking_scaling_policy_configuration"][0]["predefined_metric_specification"][0][
                "predefined_metric_type"
            ]
            for policy in MODEL.resources["aws_appautoscaling_policy"].values()
        }
        self.assertEqual(
            metrics, {"ECSServiceAverageCPUUtilization", "ECSServiceAverageMemoryUtilization"}
        )
        cluster = MODEL.resources["aws_ecs_cluster"]["main"]
        self.assertIn({"name": "containerInsights", "value": "enabled"}, cluster["setting"])
        log_group = MODEL.resources["aws_cloudwatch_log_group"]["ecs"]
        self.assertEqual(MODEL.locals["ecs_log_group_name"], "/aws/ecs/plex-watch-together/${var.environment}")
        self.assertEqual(log_group["retention_in_days"], "${var.log_retention_days}")
        self.assertIn("kms_key_id", log_group)


class Iam(unittest.TestCase):
    def task_role_policies(self):
        policies = [
            policy
            for policy in MODEL.resources["aws_iam_role_policy"].values()
            if policy["role"] in ("${aws_iam_role.ecs_task.id}", "${aws_iam_role.ecs_task.name}")
        ]
        return policies

    def test_task_role_has_one_policy_and_no_attachments(self):
        self.assertEqual(
            MODEL.resources["aws_ecs_task_definition"]["main"]["task_role_arn"], "${aws_iam_role.ecs_task.arn}"
        )
        self.assertEqual(len(self.task_role_policies()), 1)
        for attachment in MODEL.resources.get("aws_iam_role_policy_attachment", {}).values():
            self.assertNotIn("aws_iam_role.ecs_task.", attachment["role"])
        self.assertNotIn("inline_policy", MODEL.resources["aws_iam_role"]["ecs_task"])
        self.assertNotIn("managed_policy_arns", MODEL.resources["aws_iam_role"]["ecs_task"])

    def test_task_policy_grants_exactly_put_metric_data_and_publish(self):
        document = MODEL.resolve(self.task_role_policies()[0]["policy"])
        statements = document["statement"]
        self.assertEqual(len(statements), 2)
        actions = [action for statement in statements for action in statement["actions"]]
        self.assertEqual(sorted(actions), ["cloudwatch:PutMetricData", "sns:Publish"])
        by_action = {statement["actions"][0]: statement for statement in statements}
        for statement in statements:
            self.assertEqual(statement.get("effect", "Allow"), "Allow")
            self.assertNotIn("not_actions", statement)
            self.assertNotIn("not_resources", statement)
            self.assertEqual(len(statement["actions"]), 1)

        put = by_action["cloudwatch:PutMetricData"]
        self.assertEqual(put["resources"], ["*"])
        self.assertEqual(
            put["condition"],
            [{"test": "StringEquals", "variable": "cloudwatch:namespace", "values": ["${var.metrics_namespace}"]}],
        )
        self.assertEqual(MODEL.variables["metrics_namespace"]["default"], "PlexWatchTogether")

        publish = by_action["sns:Publish"]
        self.assertEqual(
            sorted(publish["resources"]), ["${aws_sns_topic.critical.arn}", "${aws_sns_topic.warning.arn}"]
        )
        self.assertNotIn("condition", publish)

    def test_sns_key_policy_lets_the_task_role_use_it_only_through_sns(self):
        key = MODEL.resources["aws_kms_key"]["sns"]
        statements = MODEL.resolve(key["policy"])["statement"]
        for topic in ("critical", "warning"):
            self.assertEqual(
                MODEL.resources["aws_sns_topic"][topic]["kms_master_key_id"], "${aws_kms_key.sns.arn}"
            )
        task = [s for s in statements if s["principals"][0]["identifiers"] == ["${aws_iam_role.ecs_task.arn}"]]
        self.assertEqual(len(task), 1)
        self.assertEqual(
            task[0]["condition"],
            [{"test": "StringEquals", "variable": "kms:ViaService", "values": ["sns.${var.aws_region}.amazonaws.com"]}],
        )
        self.assertTrue(any(action.startswith("kms:GenerateDataKey") for action in task[0]["actions"]))
        self.assertIn("kms:Decrypt", task[0]["actions"])
        cloudwatch = [s for s in statements if s["principals"][0]["identifiers"] == ["cloudwatch.amazonaws.com"]]
        self.assertEqual(len(cloudwatch), 1)

    def test_execution_role_reads_exactly_the_tasks_parameters(self):
        policy = MODEL.resources["aws_iam_role_policy"]["ecs_execution_secrets"]
        self.assertEqual(policy["role"], "${aws_iam_role.ecs_execution.id}")
        statements = MODEL.resolve(policy["policy"])["statement"]
        ssm = [s for s in statements if s["actions"] == ["ssm:GetParameters"]]
        self.assertEqual(len(ssm), 1)
        allowed = set(MODEL.resolve(ssm[0]["resources"]))
        used = {value for c in containers().values() for value in secrets_of(c).values()}
        self.assertEqual(allowed, used - {MASTER_PASSWORD})
        kms = [s for s in statements if s["actions"] == ["kms:Decrypt"]]
        self.assertEqual(kms[0]["resources"], ["${aws_kms_key.secrets.arn}"])
        via = {v for c in kms[0]["condition"] if c["variable"] == "kms:ViaService" for v in c["values"]}
        self.assertEqual(via, {"ssm.${var.aws_region}.amazonaws.com", "secretsmanager.${var.aws_region}.amazonaws.com"})
        # The master secret, read by ARN; nothing else of Secrets Manager.
        sm = [s for s in statements if any(a.startswith("secretsmanager:") for a in s["actions"])]
        self.assertEqual(len(sm), 1)
        self.assertEqual(sm[0]["actions"], ["secretsmanager:GetSecretValue"])
        self.assertEqual(sm[0]["resources"], [MASTER_SECRET])


class Alarms(unittest.TestCase):
    def test_every_alarm_notifies_and_resolves_through_its_runbook_class_topic(self):
        # The runbook classes latency above 2 s as a warning (e-mail), like Vigil's
        # HighLatency; every other backstop pages.
        # A failed restart after a rotation is warned: the tasks still serve on their
        # open connections, and Vigil pages if the database becomes unreachable.
        warnings = {"alb_target_response_time", "restart_after_rotation_failed"}
        alarms = MODEL.resources["aws_cloudwatch_metric_alarm"]
        self.assertTrue(alarms)
        self.assertLessEqual(warnings, set(alarms))
        for name, alarm in alarms.items():
            topic = "${aws_sns_topic.warning.arn}" if name in warnings else "${aws_sns_topic.critical.arn}"
            with self.subTest(alarm=name):
                self.assertTrue(alarm.get("alarm_actions"))
                self.assertTrue(alarm.get("ok_actions"))
                self.assertEqual(alarm["alarm_actions"], [topic])
                self.assertEqual(alarm["ok_actions"], [topic])

    def test_the_ten_backstop_alarms_exist_with_the_names_the_dashboard_lists(self):
        names = {alarm["alarm_name"] for alarm in MODEL.resources["aws_cloudwatch_metric_alarm"].values()}
        self.assertEqual(names, {"${var.environment}-" + suffix for suffix in ALARM_SUFFIXES})
        listed = set(
            re.findall(r"alarm:\$\{environment\}-([a-z0-9-]+)", (REPO / "dashboards" / "alerts.json").read_text())
        )
        self.assertEqual(listed, ALARM_SUFFIXES)

    def test_heartbeat_alarm_treats_silence_as_an_outage(self):
        alarm = MODEL.resources["aws_cloudwatch_metric_alarm"]["vigil_heartbeat"]
        self.assertEqual(alarm["namespace"], "${var.metrics_namespace}")
        self.assertEqual(alarm["metric_name"], "vigil_heartbeat")
        self.assertEqual(alarm["dimensions"], {"Environment": "${var.environment}", "Service": "${local.service}"})
        self.assertEqual(MODEL.locals["service"], "watch-together")
        self.assertEqual(alarm["statistic"], "SampleCount")
        self.assertEqual(alarm["period"], 60)
        self.assertEqual((alarm["evaluation_periods"], alarm["datapoints_to_alarm"]), (3, 3))
        self.assertEqual((alarm["comparison_operator"], alarm["threshold"]), ("LessThanThreshold", 1))
        self.assertEqual(alarm["treat_missing_data"], "breaching")

    def test_thresholds(self):
        alarms = MODEL.resources["aws_cloudwatch_metric_alarm"]
        rate = alarms["alb_5xx_rate"]
        expression = [q for q in rate["metric_query"] if q.get("return_data")][0]["expression"]
        metrics = {q["metric"][0]["metric_name"] for q in rate["metric_query"] if "metric" in q}
        self.assertEqual(metrics, {"HTTPCode_Target_5XX_Count", "RequestCount"})
        self.assertIn("100", expression)
        self.assertEqual({q["metric"][0]["period"] for q in rate["metric_query"] if "metric" in q}, {300})
        self.assertEqual((rate["threshold"], rate["treat_missing_data"]), (5, "notBreaching"))
        latency = alarms["alb_target_response_time"]
        self.assertEqual((latency["extended_statistic"], latency["threshold"]), ("p95", 2))
        self.assertEqual(alarms["rds_cpu"]["threshold"], 80)
        self.assertEqual(alarms["rds_free_storage"]["threshold"], "${local.rds_free_storage_threshold_bytes}")
        self.assertIn("0.2 * var.db_allocated_storage", MODEL.locals["rds_free_storage_threshold_bytes"])
        self.assertIn("0.8 * var.db_max_connections", MODEL.locals["rds_connections_threshold"])
        self.assertEqual(alarms["redis_memory"]["threshold"], 80)
        self.assertEqual(alarms["redis_evictions"]["threshold"], 0)


class Variables(unittest.TestCase):
    def test_every_variable_has_a_type_and_a_description(self):
        for name, variable in MODEL.variables.items():
            with self.subTest(variable=name):
                self.assertIn("type", variable)
                self.assertTrue(str(variable.get("description", "")).strip())

    def test_blue_green_in_production_only_gated_longer_than_the_script_waits(self):
        for environment in ENVIRONMENTS:
            with self.subTest(environment=environment):
                values = tfvars(environment)
                self.assertIs(values["blue_green_deployments"], environment == "production")
                # deploy.sh's startup grace (10 min) plus its bake (5 min), with room.
                self.assertGreaterEqual(values["deployment_ready_wait_minutes"], 20)
                self.assertGreater(values["deployment_rollback_window_minutes"], 0)

    def test_defaults_are_few_and_not_environment_specific(self):
        defaulted = {name for name, variable in MODEL.variables.items() if "default" in variable}
        self.assertEqual(defaulted, {"metrics_namespace", "pagerduty_endpoint_url"})
        self.assertIsNone(MODEL.variables["pagerduty_endpoint_url"]["default"])
        self.assertIs(MODEL.variables["pagerduty_endpoint_url"]["sensitive"], True)

    def test_every_tfvars_sets_every_required_variable_and_nothing_undeclared(self):
        required = {name for name, variable in MODEL.variables.items() if "default" not in variable}
        self.assertGreater(len(required), 20)
        for environment in ENVIRONMENTS:
            with self.subTest(environment=environment):
                values = tfvars(environment)
                self.assertEqual(required - set(values), set(), "missing")
                self.assertEqual(set(values) - set(MODEL.variables), set(), "undeclared")
                self.assertEqual(values["environment"], environment)

    def test_no_secret_in_any_tfvars(self):
        for environment in ENVIRONMENTS:
            with self.subTest(environment=environment):
                values = tfvars(environment)
                self.assertNotIn("pagerduty_endpoint_url", values)
                for name, value in values.items():
                    self.assertNotRegex(name, r"(?i)password|secret|token|auth")
                    self.assertNotRegex(str(value), r"(?i)pagerduty\.com|hooks\.|://[^/@\s]+:[^/@\s]+@")

    def test_sizes_follow_the_runbook(self):
        dev, staging, production = (tfvars(e) for e in ENVIRONMENTS)
        self.assertEqual((production["ecs_min_tasks"], production["ecs_max_tasks"]), (2, 10))
        self.assertEqual(production["db_instance_class"], "db.t3.medium")
        self.assertIs(production["db_multi_az"], True)
        self.assertIs(production["db_deletion_protection"], True)
        self.assertIs(production["alb_deletion_protection"], True)
        self.assertIs(production["nat_gateway_per_az"], True)
        self.assertEqual(production["log_retention_days"], 30)
        self.assertEqual((staging["ecs_min_tasks"], staging["ecs_max_tasks"]), (1, 1))
        self.assertEqual(staging["db_instance_class"], "db.t3.small")
        self.assertEqual(staging["log_retention_days"], 3)
        self.assertEqual((dev["ecs_min_tasks"], dev["ecs_max_tasks"]), (1, 1))
        self.assertEqual(dev["db_instance_class"], "db.t3.micro")
        self.assertLessEqual(dev["log_retention_days"], 3)
        self.assertIs(dev["db_deletion_protection"], False)
        for values in (dev, staging):
            self.assertIs(values["nat_gateway_per_az"], False)


class Dashboards(unittest.TestCase):
    def test_the_three_dashboards_come_from_the_files_through_templatefile(self):
        dashboards = MODEL.resources["aws_cloudwatch_dashboard"]
        self.assertEqual(len(dashboards), 1)
        dashboard = next(iter(dashboards.values()))
        stems = re.findall(r'"(\w+)"', dashboard["for_each"])
        self.assertEqual(sorted(stems), sorted(DASHBOARDS))
        self.assertEqual(dashboard["dashboard_name"], "${var.environment}-watch-together-${each.key}")
        body = dashboard["dashboard_body"]
        self.assertRegex(body, r'^\$\{templatefile\("\$\{path\.module\}/\.\./dashboards/\$\{each\.key\}\.json",')
        for variable in ("environment = var.environment", "region = var.aws_region",
                         "account_id = data.aws_caller_identity.current.account_id"):
            self.assertIn(variable, body)
        files = {p.stem for p in (INFRA.parent / "dashboards").glob("*.json")}
        self.assertEqual(files, set(DASHBOARDS))
        for stem in DASHBOARDS:
            text = (INFRA.parent / "dashboards" / f"{stem}.json").read_text()
            json.loads(text)
            self.assertLessEqual(set(re.findall(r"\$\{(\w+)\}", text)), {"environment", "region", "account_id"})


class Data(unittest.TestCase):
    def test_postgres(self):
        db = MODEL.resources["aws_db_instance"]["main"]
        self.assertEqual(db["engine"], "postgres")
        self.assertTrue(str(db["engine_version"]).startswith("16"))
        self.assertIs(db["storage_encrypted"], True)
        self.assertEqual(db["kms_key_id"], "${aws_kms_key.main.arn}")
        self.assertEqual(db["multi_az"], "${var.db_multi_az}")
        self.assertEqual(db["backup_retention_period"], "${var.db_backup_retention_days}")
        self.assertEqual(db["deletion_protection"], "${var.db_deletion_protection}")
        self.assertEqual(db["skip_final_snapshot"], "${local.is_dev}")
        self.assertEqual(MODEL.locals["is_dev"], '${var.environment == "dev"}')
        self.assertIs(db["performance_insights_enabled"], True)
        self.assertGreater(db["monitoring_interval"], 0)
        self.assertIs(db["iam_database_authentication_enabled"], True)
        self.assertIs(db["publicly_accessible"], False)
        self.assertTrue(db["enabled_cloudwatch_logs_exports"])
        group = MODEL.resources["aws_db_parameter_group"][ref(db["parameter_group_name"]).split(".")[1]]
        self.assertIn({"name": "rds.force_ssl", "value": "1"}, group["parameter"])

    def test_redis(self):
        redis = MODEL.resources["aws_elasticache_replication_group"]["main"]
        self.assertIs(redis["at_rest_encryption_enabled"], True)
        self.assertIs(redis["transit_encryption_enabled"], True)
        self.assertEqual(redis["auth_token"], '${local.generated["redis-auth-token"]}')
        self.assertEqual(redis["automatic_failover_enabled"], "${var.cache_multi_az}")
        self.assertEqual(redis["multi_az_enabled"], "${var.cache_multi_az}")


class Secrets(unittest.TestCase):
    def test_generated_passwords_live_in_secrets_manager_and_never_in_a_plan(self):
        generated = MODEL.locals["generated_secrets"]
        self.assertEqual(set(generated), {"redis-auth-token"})
        secret = MODEL.resources["aws_secretsmanager_secret"]["generated"]
        self.assertEqual(secret["kms_key_id"], "${aws_kms_key.secrets.arn}")
        version = MODEL.resources["aws_secretsmanager_secret_version"]["generated"]
        # Written once from the ephemeral draw: the draw is in no plan and no state.
        self.assertEqual(
            version["secret_string_wo"],
            "${ephemeral.aws_secretsmanager_random_password.generated[each.key].random_password}",
        )
        self.assertEqual(version["secret_string_wo_version"], 1)
        self.assertNotIn("secret_string", version)

    def test_rds_manages_and_rotates_the_master_password_in_the_maintenance_window(self):
        db = MODEL.resources["aws_db_instance"]["main"]
        self.assertNotIn("password", db)
        self.assertIs(db["manage_master_user_password"], True)
        self.assertEqual(db["master_user_secret_kms_key_id"], "${aws_kms_key.secrets.arn}")
        rotation = MODEL.resources["aws_secretsmanager_secret_rotation"]["database_master"]
        self.assertEqual(rotation["secret_id"], MASTER_SECRET)
        self.assertNotIn("rotation_lambda_arn", rotation, "RDS rotates its own secret")
        rules = rotation["rotation_rules"][0]
        # The runbook's maintenance window: the second Sunday of the month, 02:00-04:00 UTC.
        self.assertEqual(rules["schedule_expression"], "cron(0 2 ? * SUN#2 *)")
        self.assertEqual(rules["duration"], "2h")

    def test_every_task_restarts_after_a_rotation_one_at_a_time_or_rolling(self):
        # A running task keeps the password it started with: its open connections
        # live on, new ones are refused. After each rotation, every task is replaced.
        rule = MODEL.resources["aws_cloudwatch_event_rule"]["database_password_rotated"]
        pattern = MODEL.locals["rotation_succeeded_pattern"]
        self.assertEqual(rule["event_pattern"], "${jsonencode(local.rotation_succeeded_pattern)}")
        self.assertEqual(pattern["source"], ["aws.secretsmanager"])
        self.assertEqual(pattern["detail"]["eventName"], ["RotationSucceeded"])
        self.assertEqual(pattern["detail"]["additionalEventData"]["SecretId"], [MASTER_SECRET])
        target = MODEL.resources["aws_cloudwatch_event_target"]["restart_tasks"]
        self.assertEqual(target["arn"], "${aws_sfn_state_machine.restart_tasks.arn}")
        machine = MODEL.resources["aws_sfn_state_machine"]["restart_tasks"]
        self.assertEqual(machine["definition"], "${local.restart_tasks_definition}")
        definition = MODEL.locals["restart_tasks_definition"]
        self.assertRegex(
            definition,
            r"var\.blue_green_deployments \? jsonencode\(local\.restart_one_at_a_time\) : jsonencode\(local\.restart_rolling\)",
        )
        rolling = MODEL.locals["restart_rolling"]["States"]
        update = rolling[MODEL.locals["restart_rolling"]["StartAt"]]
        self.assertEqual(update["Resource"], "arn:${local.partition}:states:::aws-sdk:ecs:updateService")
        self.assertIs(update["Parameters"]["ForceNewDeployment"], True)
        # Under CODE_DEPLOY a forced deployment is refused: stop one task at a time and
        # wait until the service runs as many as it wants before the next.
        one = MODEL.locals["restart_one_at_a_time"]
        each = one["States"]["StopEachInTurn"]
        self.assertEqual(each["Type"], "Map")
        self.assertEqual(each["MaxConcurrency"], 1)
        inner = each["Iterator"]["States"]
        self.assertEqual(inner["StopTask"]["Resource"], "arn:${local.partition}:states:::aws-sdk:ecs:stopTask")
        self.assertEqual(
            inner["Replaced"]["Choices"][0]["NumericGreaterThanEqualsPath"], "$.desired"
        )
        # A restart that fails is an alarm on the warning topic, not silence.
        alarm = MODEL.resources["aws_cloudwatch_metric_alarm"]["restart_after_rotation_failed"]
        self.assertEqual(alarm["metric_name"], "ExecutionsFailed")
        self.assertEqual(alarm["alarm_actions"], ["${aws_sns_topic.warning.arn}"])


class Audit(unittest.TestCase):
    def test_one_multi_region_trail_validated_and_encrypted_with_its_own_key(self):
        trail = MODEL.resources["aws_cloudtrail"]["main"]
        self.assertIs(trail["is_multi_region_trail"], True)
        self.assertIs(trail["enable_log_file_validation"], True)
        self.assertIs(trail["include_global_service_events"], True)
        self.assertEqual(trail["kms_key_id"], "${aws_kms_key.cloudtrail.arn}")
        self.assertEqual(trail["s3_bucket_name"], "${aws_s3_bucket.cloudtrail.id}")
        sse = MODEL.resources["aws_s3_bucket_server_side_encryption_configuration"]["cloudtrail"]
        default = sse["rule"][0]["apply_server_side_encryption_by_default"][0]
        self.assertEqual(default["sse_algorithm"], "aws:kms")
        self.assertEqual(default["kms_master_key_id"], "${aws_kms_key.cloudtrail.arn}")
        block = MODEL.resources["aws_s3_bucket_public_access_block"]["cloudtrail"]
        for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
            self.assertIs(block[flag], True, flag)
        self.assertIs(MODEL.resources["aws_kms_key"]["cloudtrail"]["enable_key_rotation"], True)

    def test_production_copies_its_backups_to_another_region(self):
        replication = MODEL.resources["aws_db_instance_automated_backups_replication"]["main"]
        self.assertEqual(replication["provider"], "${aws.backup}")
        self.assertEqual(replication["source_db_instance_arn"], "${aws_db_instance.main.arn}")
        self.assertEqual(replication["retention_period"], "${var.db_backup_retention_days}")
        production = tfvars("production")
        self.assertIsNotNone(production["db_backup_replication_region"])
        self.assertNotEqual(production["db_backup_replication_region"], production["aws_region"])

    def test_the_database_subnets_have_their_own_network_acl(self):
        acl = MODEL.resources["aws_network_acl"]["database"]
        self.assertEqual(acl["subnet_ids"], "${aws_subnet.database[*].id}")
        text = MODEL.text["main.tf"]
        ingress = text[text.index("database_acl_ingress = concat(") : text.index("database_acl_egress = concat(")]
        self.assertEqual(sorted(set(re.findall(r"from = (\d+)", ingress))), ["0", "5432", "6379"])
        self.assertNotIn("0.0.0.0/0", text[text.index("database_acl_ingress") :])
        for direction in ("database_ingress", "database_egress"):
            rule = MODEL.resources["aws_network_acl_rule"][direction]
            self.assertEqual(rule["rule_action"], "allow")
            self.assertEqual(rule["protocol"], "tcp")


class Network(unittest.TestCase):
    def test_every_rule_is_described_and_only_the_alb_is_open_to_the_internet(self):
        rules = {
            **{f"ingress.{k}": v for k, v in MODEL.resources["aws_vpc_security_group_ingress_rule"].items()},
            **{f"egress.{k}": v for k, v in MODEL.resources["aws_vpc_security_group_egress_rule"].items()},
        }
        self.assertNotIn("aws_security_group_rule", MODEL.resources)
        for name, rule in rules.items():
            with self.subTest(rule=name):
                self.assertTrue(rule.get("description", "").strip())
                self.assertNotEqual(rule.get("ip_protocol"), "-1")
                if rule.get("cidr_ipv4") == "0.0.0.0/0" and name.startswith("ingress."):
                    self.assertEqual(rule["security_group_id"], "${aws_security_group.alb.id}")
                    self.assertIn(rule["from_port"], (80, 443))
        for group in MODEL.resources["aws_security_group"].values():
            self.assertNotIn("ingress", group)
            self.assertNotIn("egress", group)
        default = MODEL.resources["aws_default_security_group"]["default"]
        self.assertNotIn("ingress", default)
        self.assertNotIn("egress", default)

    def test_data_stores_admit_only_the_tasks(self):
        ingress = MODEL.resources["aws_vpc_security_group_ingress_rule"]
        for group, port in (("database", 5432), ("cache", 6379)):
            with self.subTest(group=group):
                rules = [r for r in ingress.values() if r["security_group_id"] == f"${{aws_security_group.{group}.id}}"]
                self.assertEqual(len(rules), 1)
                self.assertEqual((rules[0]["from_port"], rules[0]["to_port"]), (port, port))
                self.assertEqual(rules[0]["referenced_security_group_id"], "${aws_security_group.tasks.id}")

    def test_waf_and_tls(self):
        acl = MODEL.resources["aws_wafv2_web_acl"]["main"]
        groups = {rule["statement"][0]["managed_rule_group_statement"][0]["name"] for rule in acl["rule"]}
        self.assertLessEqual(
            {"AWSManagedRulesSQLiRuleSet", "AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"},
            groups,
        )
        self.assertEqual(acl["scope"], "REGIONAL")
        association = MODEL.resources["aws_wafv2_web_acl_association"]["alb"]
        self.assertEqual(association["resource_arn"], "${aws_lb.main.arn}")
        self.assertIn("aws_wafv2_web_acl_logging_configuration", MODEL.resources)
        https = MODEL.resources["aws_lb_listener"]["https"]
        self.assertEqual(https["ssl_policy"], "ELBSecurityPolicy-TLS13-1-2-2021-06")
        redirect = MODEL.resources["aws_lb_listener"]["http"]["default_action"][0]["redirect"][0]
        self.assertEqual((redirect["protocol"], redirect["status_code"]), ("HTTPS", "HTTP_301"))
        self.assertIs(MODEL.resources["aws_lb"]["main"]["drop_invalid_header_fields"], True)


class Dockerfile(unittest.TestCase):
    """The images the task definition runs: targets and health checks agree with it."""

    def test_targets_and_health_checks_match_the_task_definition(self):
        text = (REPO / "Dockerfile").read_text(encoding="utf-8")
        stages = re.findall(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", text)
        self.assertEqual(stages, ["base", "chef", "planner", "deps", "builder", "binaries", "app", "vigil"])
        # The bases are build arguments (scripts/test-images.sh builds with local ones);
        # their defaults are the pinned images, and the binaries the builder's.
        args = dict(re.findall(r"(?m)^ARG (RUST_IMAGE|RUNTIME_IMAGE|BINARIES)=(\S+)$", text))
        self.assertEqual(args, {"RUST_IMAGE": "rust:1.95-slim-bookworm",
                                "RUNTIME_IMAGE": "gcr.io/distroless/cc-debian12:nonroot",
                                "BINARIES": "builder"})
        self.assertRegex(text, r"(?m)^FROM \$\{BINARIES\} AS binaries$")
        self.assertEqual(len(re.findall(r"(?m)^FROM \$\{RUNTIME_IMAGE\} AS (app|vigil)$", text)), 2)
        self.assertNotIn("COPY --from=builder", text)
        for name, container in containers().items():
            with self.subTest(target=name):
                stage = text.split(f"AS {name}\n", 1)[1].split("\nFROM ", 1)[0]
                command = container["healthCheck"]["command"][1:]
                self.assertIn(f"CMD {json.dumps(command)}", stage)
                self.assertRegex(stage, r"(?m)^USER (nonroot|65532:65532)$")


class Runbooks(unittest.TestCase):
    """The runbooks name what Terraform creates, and commands that exist."""

    def names(self, environment: str) -> dict[str, set[str]]:
        def resolve(value: str) -> str:
            value = value.replace("${local.name}", MODEL.locals["name"])
            return value.replace("${var.environment}", environment)

        name = resolve(MODEL.locals["name"])
        resources = MODEL.resources
        return {
            "cluster": {resolve(resources["aws_ecs_cluster"]["main"]["name"])},
            "service": {resolve(resources["aws_ecs_service"]["main"]["name"]).replace("${local.service}", MODEL.locals["service"])},
            "family": {resolve(resources["aws_ecs_task_definition"]["main"]["family"])},
            "db": {resolve(resources["aws_db_instance"]["main"]["identifier"])},
            "cache": {resolve(resources["aws_elasticache_replication_group"]["main"]["replication_group_id"])},
            "log_group": {resolve(MODEL.locals["ecs_log_group_name"])},
            "any": {name},
        }

    def test_every_aws_name_in_a_runbook_is_one_terraform_creates(self):
        names = self.names("production")
        flags = {
            "--cluster": names["cluster"],
            "--services": names["service"],
            "--service": names["service"],
            "--family-prefix": names["family"],
            "--db-instance-identifier": names["db"],
            "--replication-group-id": names["cache"],
            "--source-identifier": names["db"] | names["cache"],
        }
        runbooks = sorted((REPO / "alerts" / "runbooks").glob("*.md"))
        self.assertGreaterEqual(len(runbooks), 13)
        for runbook in runbooks:
            # The Resources sections write `<env>`: checked here as production's names.
            text = runbook.read_text().replace("<env>", "production")
            for flag, allowed in flags.items():
                for value in re.findall(re.escape(flag) + r" ([^\s`]+)", text):
                    self.assertIn(value, allowed, f"{runbook.name}: {flag} {value}")
            for group in re.findall(r"(/aws/ecs/[^\s`;,]+)", text):
                self.assertIn(group, names["log_group"], f"{runbook.name}: log group {group}")
            for script in re.findall(r"(scripts/[\w.-]+)", text):
                self.assertTrue((REPO / script).exists(), f"{runbook.name}: {script} does not exist")

    def test_every_runbook_lists_the_resources_of_its_alert(self):
        # Each runbook's `## Resources` section lists, as bullets, what Terraform creates
        # for its alert, with `<env>` for the environment: every such name is one of
        # infrastructure/*.tf's, every `<env>-...` name that is neither an SNS topic nor
        # a dashboard is one of the backstop alarms, and each section names at least one
        # of the cluster, the database, the replication group, an alarm or a topic.
        known = terraform_names()
        alarms = {resolve_name(a["alarm_name"]) for a in MODEL.resources["aws_cloudwatch_metric_alarm"].values()}
        self.assertEqual(alarms, {"<env>-" + suffix for suffix in ALARM_SUFFIXES})
        topics = {resolve_name(t["name"]) for t in MODEL.resources["aws_sns_topic"].values()}
        self.assertEqual(topics, {"<env>-critical", "<env>-warning"})
        dashboards = {f"<env>-watch-together-{stem}" for stem in DASHBOARDS}
        self.assertLessEqual(dashboards, known)
        resources = MODEL.resources
        anchors = alarms | topics | {
            resolve_name(resources["aws_ecs_cluster"]["main"]["name"]),
            resolve_name(resources["aws_db_instance"]["main"]["identifier"]),
            resolve_name(resources["aws_elasticache_replication_group"]["main"]["replication_group_id"]),
        }
        runbooks = sorted(p for p in (REPO / "alerts" / "runbooks").glob("*.md") if p.name != "README.md")
        self.assertGreaterEqual(len(runbooks), 13)
        for runbook in runbooks:
            with self.subTest(runbook=runbook.name):
                sections = re.findall(r"(?ms)^## Resources[ \t]*\n(.*?)(?=^## |\Z)", runbook.read_text())
                self.assertEqual(len(sections), 1, "exactly one ## Resources section")
                self.assertRegex(sections[0], r"(?m)^- \S", "a bullet list")
                names = set(re.findall(r"`([^`\n]+)`", sections[0]))
                for name in sorted(n for n in names if "<env>" in n):
                    if name.startswith("<env>-") and name not in topics | dashboards:
                        self.assertTrue(name in alarms, f"{name} is not an alarm of monitoring.tf")
                    self.assertTrue(name in known, f"{name} is not a name infrastructure/*.tf creates")
                self.assertTrue(names & anchors, "names none of the cluster, database, cache, alarms or topics")


if __name__ == "__main__":
    unittest.main()


class BlueGreen(unittest.TestCase):
    """Production's deployments: CodeDeploy's ECS blue/green, held for deploy.sh's gate."""

    def test_the_service_is_deployed_by_codedeploy_where_blue_green(self):
        service = MODEL.resources["aws_ecs_service"]["main"]
        self.assertEqual(service["deployment_controller"],
                         [{"type": '${var.blue_green_deployments ? "CODE_DEPLOY" : "ECS"}'}])
        # deploy.sh owns what runs and which target group serves: Terraform must not
        # put either back.
        self.assertEqual(set(service["lifecycle"][0]["ignore_changes"]),
                         {"desired_count", "task_definition", "load_balancer"})
        listener = MODEL.resources["aws_lb_listener"]["https"]
        self.assertEqual(listener["lifecycle"][0]["ignore_changes"], ["default_action"])

    def test_the_deployment_waits_for_the_gate_and_rolls_back_by_itself(self):
        group = MODEL.resources["aws_codedeploy_deployment_group"]["main"]
        self.assertEqual(group["count"], "${var.blue_green_deployments ? 1 : 0}")
        self.assertEqual(group["deployment_style"],
                         [{"deployment_option": "WITH_TRAFFIC_CONTROL", "deployment_type": "BLUE_GREEN"}])
        config = group["blue_green_deployment_config"][0]
        self.assertEqual(config["deployment_ready_option"],
                         [{"action_on_timeout": "STOP_DEPLOYMENT",
                           "wait_time_in_minutes": "${var.deployment_ready_wait_minutes}"}])
        self.assertEqual(config["terminate_blue_instances_on_deployment_success"][0]["termination_wait_time_in_minutes"],
                         "${var.deployment_rollback_window_minutes}")
        rollback = group["auto_rollback_configuration"][0]
        self.assertIs(rollback["enabled"], True)
        self.assertEqual(set(rollback["events"]), {"DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST"})

    def test_the_pair_is_two_target_groups_behind_the_production_and_test_listeners(self):
        pair = MODEL.resources["aws_codedeploy_deployment_group"]["main"]["load_balancer_info"][0]["target_group_pair_info"][0]
        self.assertEqual(pair["prod_traffic_route"], [{"listener_arns": ["${aws_lb_listener.https.arn}"]}])
        self.assertEqual(pair["test_traffic_route"], [{"listener_arns": ["${aws_lb_listener.test[0].arn}"]}])
        self.assertEqual([t["name"] for t in pair["target_group"]],
                         ['${aws_lb_target_group.app["blue"].name}', '${aws_lb_target_group.app["green"].name}'])
        # Nothing opens the test listener's port to anyone.
        ports = {rule.get("from_port") for rule in MODEL.resources["aws_vpc_security_group_ingress_rule"].values()}
        self.assertNotIn(8443, ports)

    def test_deploy_sh_uses_the_names_terraform_gives(self):
        script = (INFRA.parent / "scripts" / "deploy.sh").read_text()
        self.assertEqual(MODEL.resources["aws_codedeploy_app"]["main"]["name"], "${local.name}")
        self.assertEqual(MODEL.resources["aws_codedeploy_deployment_group"]["main"]["deployment_group_name"], "${local.service}")
        for line in ("CLUSTER=watch-together-$ENVIRONMENT", "SERVICE=watch-together",
                     "CODEDEPLOY_APP=watch-together-$ENVIRONMENT", "CODEDEPLOY_GROUP=watch-together",
                     "APP_CONTAINER=app", "APP_PORT=3000"):
            self.assertIn(line, script)
