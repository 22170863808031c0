"""Tests for deploy.sh: its calls, their order, and what a failed gate and a rollback do.

Run from the repository root:
    .venv/bin/python -m unittest discover -s scripts -p 'test_deploy.py'

ECS, the task definitions and CloudWatch (Vigil's vigil_deploy_blockers) are a real
moto_server of the test's own. moto stores CodeDeploy deployments but never moves
them past Created, and has no StopDeployment or ContinueDeployment, so CodeDeploy is
a small recorder here (AWS_ENDPOINT_URL_CODEDEPLOY): it records every call and does
to moto's ECS what CodeDeploy does to the service (a replacement task set at
CreateDeployment, the PRIMARY task set switched at ContinueDeployment, switched back
and removed at StopDeployment with rollback). The sidecars are a feeder that puts
each new task's vigil_deploy_blockers into moto every second, as Vigil's publisher
does every minute; the gate runs with 1 s periods. The task sets are made without a
scale: moto would start their tasks, and fails awsvpc tasks started for a task set.
"""

import datetime
import http.server
import json
import os
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

import boto3

from test_cw_adapter import MOTO_SERVER, ROOT, free_port, stop_process, wait_until

DEPLOY = os.path.join(ROOT, "scripts", "deploy.sh")
REGION = "us-west-2"
NAMESPACE = "PlexWatchTogether"
IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/watch-together:1.0.0"
# The task's network: a subnet and security group made in moto (setUpClass), which
# checks that they exist.
NETWORK = {"awsvpcConfiguration": {"subnets": [], "securityGroups": []}}
LOAD_BALANCERS = [{"targetGroupArn": "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/watch-together-production-app/1",
                   "containerName": "app", "containerPort": 3000}]


class FakeCodeDeploy:
    """CodeDeploy's JSON 1.1 API, recorded, acting on moto's ECS as CodeDeploy would."""

    def __init__(self, ecs, cluster, service):
        self.ecs, self.cluster, self.service = ecs, cluster, service
        self.calls = []
        self.deployments = {}
        self.lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                op = self.headers.get("X-Amz-Target", "").split(".")[-1]
                params = json.loads(body or b"{}")
                with fake.lock:
                    fake.calls.append((op, params))
                    status, answer = fake.answer(op, params)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def ops(self):
        with self.lock:
            return [op for op, _ in self.calls]

    def task_sets(self):
        return self.ecs.describe_services(cluster=self.cluster, services=[self.service])["services"][0]["taskSets"]

    def answer(self, op, p):
        if op == "ListDeployments":
            wanted = set(p.get("includeOnlyStatuses", []))
            ids = [i for i, d in self.deployments.items() if not wanted or d["status"] in wanted]
            return 200, {"deployments": ids}
        if op == "CreateDeployment":
            appspec = json.loads(p["revision"]["appSpecContent"]["content"])
            props = appspec["Resources"][0]["TargetService"]["Properties"]
            original = next(t for t in self.task_sets() if t["status"] == "PRIMARY")
            replacement = self.ecs.create_task_set(
                cluster=self.cluster, service=self.service, taskDefinition=props["TaskDefinition"],
                networkConfiguration=NETWORK, launchType="FARGATE",
                loadBalancers=[dict(LOAD_BALANCERS[0], containerName=props["LoadBalancerInfo"]["ContainerName"],
                                    containerPort=props["LoadBalancerInfo"]["ContainerPort"])])["taskSet"]
            did = "d-" + uuid.uuid4().hex[:9].upper()
            self.deployments[did] = {"status": "Ready", "original": original["taskSetArn"],
                                     "replacement": replacement["taskSetArn"], "appspec": appspec,
                                     "description": p.get("description", "")}
            return 200, {"deploymentId": did}
        if op == "GetDeployment":
            d = self.deployments.get(p["deploymentId"])
            if d is None:
                return 400, {"__type": "DeploymentDoesNotExistException", "message": "no such deployment"}
            return 200, {"deploymentInfo": {"deploymentId": p["deploymentId"], "status": d["status"],
                                            "description": d.get("description", "")}}
        if op == "ContinueDeployment":
            d = self.deployments[p["deploymentId"]]
            self.ecs.update_service_primary_task_set(cluster=self.cluster, service=self.service,
                                                     primaryTaskSet=d["replacement"])
            # Traffic has shifted; the original task set is kept for the rollback window.
            d["status"] = "InProgress"
            return 200, {}
        if op == "StopDeployment":
            d = self.deployments[p["deploymentId"]]
            if p.get("autoRollbackEnabled"):
                self.ecs.update_service_primary_task_set(cluster=self.cluster, service=self.service,
                                                         primaryTaskSet=d["original"])
                self.ecs.delete_task_set(cluster=self.cluster, service=self.service, taskSet=d["replacement"])
            d["status"] = "Stopped"
            return 200, {"status": "Succeeded", "statusMessage": "stopped"}
        return 400, {"__type": "InvalidOperationException", "message": f"the recorder has no {op}"}


class Feeder:
    """The new tasks' sidecars: vigil_deploy_blockers for one task definition, once a
    second per task, the value from verdict(seconds since the tasks started), from when
    started() is first true."""

    def __init__(self, cloudwatch, environment, revision, tasks, verdict, started, skew=0.0):
        self.stop_event = threading.Event()

        def run():
            while not started() and not self.stop_event.is_set():
                self.stop_event.wait(0.1)
            start = time.monotonic()
            while not self.stop_event.is_set():
                value = verdict(time.monotonic() - start)
                if value is not None:
                    cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=[{
                        "MetricName": "vigil_deploy_blockers",
                        "Dimensions": [{"Name": "Environment", "Value": environment},
                                       {"Name": "Service", "Value": "watch-together"},
                                       {"Name": "TaskDefinition", "Value": revision}],
                        "Timestamp": datetime.datetime.now(datetime.timezone.utc)
                        + datetime.timedelta(seconds=skew),
                        "Value": value, "Unit": "Count", "StorageResolution": 1,
                    } for _ in range(tasks)])
                self.stop_event.wait(1.0)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self):
        self.stop_event.set()
        self.thread.join(timeout=10)


class DeployTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.logdir = tempfile.TemporaryDirectory()
        cls.addClassCleanup(cls.logdir.cleanup)
        cls.moto_port = free_port()
        cls.moto_log = open(os.path.join(cls.logdir.name, "moto.log"), "wb")
        cls.addClassCleanup(cls.moto_log.close)
        # Rolling deployments complete at once in moto when this many tasks run.
        env = dict(os.environ, MOTO_ECS_SERVICE_RUNNING="2")
        cls.moto = subprocess.Popen([MOTO_SERVER, "-H", "127.0.0.1", "-p", str(cls.moto_port)],
                                    stdout=cls.moto_log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env)
        cls.addClassCleanup(stop_process, cls.moto)
        cls.moto_url = f"http://127.0.0.1:{cls.moto_port}"
        kw = dict(endpoint_url=cls.moto_url, region_name=REGION,
                  aws_access_key_id="testing", aws_secret_access_key="testing")
        cls.ecs = boto3.client("ecs", **kw)
        cls.cloudwatch = boto3.client("cloudwatch", **kw)

        def up():
            try:
                cls.ecs.list_clusters()
                return True
            except Exception:  # noqa: BLE001 - not listening yet
                return False
        wait_until(up, 60, "moto_server")
        ec2 = boto3.client("ec2", **kw)
        vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
        NETWORK["awsvpcConfiguration"]["subnets"].append(
            ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.10.0/24")["Subnet"]["SubnetId"])
        NETWORK["awsvpcConfiguration"]["securityGroups"].append(
            ec2.create_security_group(GroupName="tasks", Description="tasks", VpcId=vpc)["GroupId"])

    def setUp(self):
        self.codedeploy = None
        self.feeders = []

    def tearDown(self):
        for f in self.feeders:
            f.stop()
        if self.codedeploy:
            self.codedeploy.close()

    # ------------------------------------------------------------ the environment

    def make_service(self, environment, blue_green):
        """A cluster, two revisions of the family (the second running) and the service."""
        cluster = f"watch-together-{environment}"
        family = cluster
        # moto keeps one account for the whole run: start each test from no revisions.
        for arn in self.ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]:
            self.ecs.deregister_task_definition(taskDefinition=arn)
        self.ecs.create_cluster(clusterName=cluster)
        arns = []
        for tag in ("0.9.0", "1.0.0"):
            arns.append(self.ecs.register_task_definition(
                family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="1024", memory="2048",
                containerDefinitions=[
                    {"name": "app", "image": IMAGE.replace("1.0.0", tag), "memory": 1536, "essential": True,
                     "portMappings": [{"containerPort": 3000}]},
                    {"name": "vigil", "image": "123456789012.dkr.ecr.us-west-2.amazonaws.com/vigil:0.1.0",
                     "memory": 256, "essential": True},
                ])["taskDefinition"]["taskDefinitionArn"])
        existing = self.ecs.describe_services(cluster=cluster, services=["watch-together"])["services"]
        if existing and existing[0]["status"] == "ACTIVE":
            self.ecs.delete_service(cluster=cluster, service="watch-together", force=True)
        self.ecs.create_service(
            cluster=cluster, serviceName="watch-together", taskDefinition=arns[1], desiredCount=2,
            launchType="FARGATE", networkConfiguration=NETWORK,
            deploymentController={"type": "CODE_DEPLOY" if blue_green else "ECS"},
            loadBalancers=LOAD_BALANCERS)
        if blue_green:
            # ECS gives a CODE_DEPLOY service its first task set; moto leaves it to us.
            ts = self.ecs.create_task_set(cluster=cluster, service="watch-together", taskDefinition=arns[1],
                                          networkConfiguration=NETWORK, launchType="FARGATE",
                                          loadBalancers=LOAD_BALANCERS)
            self.ecs.update_service_primary_task_set(cluster=cluster, service="watch-together",
                                                     primaryTaskSet=ts["taskSet"]["taskSetArn"])
            self.codedeploy = FakeCodeDeploy(self.ecs, cluster, "watch-together")
        return cluster, arns

    def next_revision(self, family):
        latest = self.ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]["revision"]
        return f"{family}:{latest + 1}"

    def sidecars(self, environment, revision, verdict, tasks=2, running=False, skew=0.0):
        """Starts the sidecars of `revision`: at once when it runs already or deploys
        rolling, at CodeDeploy's CreateDeployment under blue-green; their clocks run
        `skew` seconds ahead of this machine's."""
        deploy = self.codedeploy
        started = (lambda: "CreateDeployment" in deploy.ops()) if deploy and not running else (lambda: True)
        self.feeders.append(Feeder(self.cloudwatch, environment, revision, tasks, verdict, started, skew))

    def run_deploy(self, *args, **env):
        environ = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                       AWS_REGION=REGION, AWS_ENDPOINT_URL=self.moto_url,
                       DEPLOY_GATE_PERIOD_SECONDS="1", DEPLOY_POLL_SECONDS="1",
                       DEPLOY_STARTUP_GRACE_SECONDS="20", DEPLOY_BAKE_SECONDS="3",
                       PATH=os.path.join(ROOT, ".venv", "bin") + os.pathsep + os.environ["PATH"])
        environ.pop("AWS_PROFILE", None)
        if self.codedeploy:
            environ["AWS_ENDPOINT_URL_CODEDEPLOY"] = self.codedeploy.url
        environ.update(env)
        return subprocess.run([DEPLOY, *args], capture_output=True, text=True, env=environ, timeout=300)

    def primary(self, cluster):
        sets = self.ecs.describe_services(cluster=cluster, services=["watch-together"])["services"][0]["taskSets"]
        return [t["taskDefinition"] for t in sets if t["status"] == "PRIMARY"]

    def status_of(self, arn):
        return self.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]["status"]

    def assert_ok(self, result):
        self.assertEqual(result.returncode, 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")

    # ------------------------------------------------------------ arguments

    def test_unknown_environment_action_or_argument_gets_the_usage_and_exit_2(self):
        for args in (["prod", "deploy"], ["staging", "ship"], ["staging", "deploy", "--force"],
                     ["staging"], ["staging", "deploy", "--image"], ["staging", "deploy", "--image", "a b"],
                     ["staging", "rollback", "--image", "1.2.3"], ["staging", "deploy", "--bake", "5m"]):
            with self.subTest(args=args):
                r = subprocess.run([DEPLOY, *args], capture_output=True, text=True, timeout=30)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("<dev|staging|production> <deploy|rollback|status>", r.stderr)
                self.assertIn("error:", r.stderr)
                self.assertEqual(r.stdout, "")

    def test_dry_run_prints_every_call_in_order_and_makes_none(self):
        recorder = FakeCodeDeploy(self.ecs, "none", "none")
        self.addCleanup(recorder.close)
        # Every service's endpoint at the recorder: any call at all would be recorded.
        r = subprocess.run([DEPLOY, "production", "deploy", "--image", "1.2.3", "--dry-run"],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, AWS_ENDPOINT_URL=recorder.url, AWS_ENDPOINT_URL_CODEDEPLOY=recorder.url))
        self.assert_ok(r)
        self.assertEqual(recorder.ops(), [])
        calls = [" ".join(line.split()[3:5]) for line in r.stdout.splitlines() if line.startswith("aws ")]
        self.assertEqual(calls, [
            "ecs describe-services", "deploy list-deployments", "ecs describe-task-definition",
            "ecs register-task-definition", "deploy create-deployment", "deploy get-deployment",
            "ecs describe-services", "cloudwatch get-metric-data", "deploy continue-deployment",
            "ecs describe-services",
        ])
        self.assertIn("app set to 1.2.3", r.stdout)
        self.assertIn("stop-deployment --deployment-id <the deployment's id> --auto-rollback-enabled", r.stdout)

    # ------------------------------------------------------------ blue-green

    def test_blue_green_shifts_traffic_only_after_the_gate_passes(self):
        cluster, arns = self.make_service("production", blue_green=True)
        release = self.next_revision(cluster)
        self.sidecars("production", release, lambda t: 1 if t < 2 else 0)  # starting, then clean
        r = self.run_deploy("production", "deploy", "--image", "1.1.0")
        self.assert_ok(r)
        self.assertEqual(self.codedeploy.ops(), ["ListDeployments", "CreateDeployment", "GetDeployment", "ContinueDeployment"])
        self.assertIn("Gate passed", r.stdout)
        new_arn = self.primary(cluster)[0]
        self.assertTrue(new_arn.endswith(release), new_arn)
        td = self.ecs.describe_task_definition(taskDefinition=new_arn)["taskDefinition"]
        images = {c["name"]: c["image"] for c in td["containerDefinitions"]}
        self.assertEqual(images["app"], IMAGE.replace("1.0.0", "1.1.0"))
        self.assertTrue(images["vigil"].endswith("vigil:0.1.0"))
        appspec = self.codedeploy.calls[1][1]["revision"]["appSpecContent"]["content"]
        self.assertIn('"version":0.0', appspec)
        self.assertIn('"ContainerName":"app","ContainerPort":3000', appspec)

    def test_blue_green_failed_gate_stops_the_deployment_and_retires_the_release(self):
        cluster, arns = self.make_service("production", blue_green=True)
        release = self.next_revision(cluster)
        # Clean at first, then a critical alert fires during the bake.
        self.sidecars("production", release, lambda t: 0 if t < 6 else 1)
        r = self.run_deploy("production", "deploy", "--image", "1.1.0", DEPLOY_BAKE_SECONDS="30")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("after reporting clean", r.stderr)
        ops = self.codedeploy.ops()
        self.assertNotIn("ContinueDeployment", ops)
        self.assertEqual(ops[-1], "StopDeployment")
        self.assertTrue(self.codedeploy.calls[-1][1]["autoRollbackEnabled"])
        self.assertEqual(self.primary(cluster), [arns[1]])
        self.assertEqual(self.status_of(f"{release}"), "INACTIVE")

    def test_blue_green_tasks_that_never_report_fail_the_gate(self):
        cluster, arns = self.make_service("production", blue_green=True)
        release = self.next_revision(cluster)
        r = self.run_deploy("production", "deploy", DEPLOY_STARTUP_GRACE_SECONDS="3", DEPLOY_BAKE_SECONDS="4")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("not clean for 4s within 7s", r.stderr)
        self.assertEqual(self.codedeploy.ops()[-1], "StopDeployment")
        self.assertEqual(self.primary(cluster), [arns[1]])
        self.assertEqual(self.status_of(release), "INACTIVE")

    def test_a_task_that_does_not_report_fails_the_gate(self):
        cluster, arns = self.make_service("production", blue_green=True)
        release = self.next_revision(cluster)
        # Two tasks run; one sidecar reports, clean, the other never does.
        self.sidecars("production", release, lambda t: 0, tasks=1)
        r = self.run_deploy("production", "deploy", DEPLOY_STARTUP_GRACE_SECONDS="4", DEPLOY_BAKE_SECONDS="3")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("did not all report", r.stderr)
        self.assertNotIn("ContinueDeployment", self.codedeploy.ops())
        self.assertEqual(self.primary(cluster), [arns[1]])

    def test_blue_green_rollback_before_the_shift_keeps_the_original_and_retires_the_release(self):
        cluster, arns = self.make_service("production", blue_green=True)
        # A release waiting for its gate (another operator's deploy, say): Ready, the
        # original still PRIMARY.
        release = self.ecs.register_task_definition(**{
            k: v for k, v in self.ecs.describe_task_definition(taskDefinition=arns[1])["taskDefinition"].items()
            if k in ("family", "networkMode", "requiresCompatibilities", "cpu", "memory", "containerDefinitions")
        })["taskDefinition"]["taskDefinitionArn"]
        appspec = {"version": 0.0, "Resources": [{"TargetService": {"Type": "AWS::ECS::Service", "Properties": {
            "TaskDefinition": release, "LoadBalancerInfo": {"ContainerName": "app", "ContainerPort": 3000}}}}]}
        with self.codedeploy.lock:
            self.codedeploy.answer("CreateDeployment", {
                "revision": {"appSpecContent": {"content": json.dumps(appspec)}},
                "description": f"scripts/deploy.sh: {arns[1].split('/')[-1]} -> {release.split('/')[-1]}, gated by Vigil"})
        r = self.run_deploy("production", "rollback")
        self.assert_ok(r)
        self.assertEqual(self.codedeploy.ops(), ["ListDeployments", "GetDeployment", "StopDeployment"])
        self.assertEqual(self.primary(cluster), [arns[1]])
        self.assertEqual(self.status_of(release), "INACTIVE")
        self.assertEqual(self.status_of(arns[1]), "ACTIVE")

    def test_blue_green_refuses_to_start_while_a_deployment_is_open(self):
        cluster, arns = self.make_service("production", blue_green=True)
        self.codedeploy.deployments["d-OPEN"] = {"status": "InProgress"}
        r = self.run_deploy("production", "deploy")
        self.assertEqual(r.returncode, 1)
        self.assertIn("d-OPEN is not finished", r.stderr)
        self.assertEqual(self.codedeploy.ops(), ["ListDeployments"])

    def test_blue_green_rollback_returns_traffic_to_the_kept_task_set(self):
        cluster, arns = self.make_service("production", blue_green=True)
        release = self.next_revision(cluster)
        self.sidecars("production", release, lambda t: 0)
        self.assert_ok(self.run_deploy("production", "deploy", "--image", "1.1.0"))
        self.assertTrue(self.primary(cluster)[0].endswith(release))
        r = self.run_deploy("production", "rollback")
        self.assert_ok(r)
        self.assertEqual(self.codedeploy.ops()[-1], "StopDeployment")
        self.assertEqual(self.primary(cluster), [arns[1]])
        self.assertEqual(self.status_of(release), "INACTIVE")

    def test_blue_green_rollback_without_a_kept_task_set_deploys_the_previous_revision(self):
        cluster, arns = self.make_service("production", blue_green=True)
        r = self.run_deploy("production", "rollback")
        self.assert_ok(r)
        self.assertEqual(self.codedeploy.ops(), ["ListDeployments", "CreateDeployment", "GetDeployment", "ContinueDeployment"])
        self.assertEqual(self.primary(cluster), [arns[0]])
        self.assertEqual(self.status_of(arns[1]), "INACTIVE")

    def status_beside_running_sidecars(self, skew=0.0):
        """`status` of a blue-green production whose running task set's sidecars have
        reported (their clocks `skew` seconds ahead): the revision and the output."""
        cluster, arns = self.make_service("production", blue_green=True)
        running = arns[1].split("/")[-1]
        self.sidecars("production", running, lambda t: 0, running=True, skew=skew)
        wait_until(lambda: self.cloudwatch.list_metrics(Namespace=NAMESPACE, MetricName="vigil_deploy_blockers",
                                                        Dimensions=[{"Name": "TaskDefinition", "Value": running}])["Metrics"],
                   30, "the sidecars' first report")
        r = self.run_deploy("production", "status", DEPLOY_GATE_PERIOD_SECONDS="60")
        self.assert_ok(r)
        return running, r.stdout

    def test_status_prints_each_task_set_with_vigils_verdict(self):
        running, out = self.status_beside_running_sidecars()
        self.assertIn("blue-green through CodeDeploy", out)
        self.assertRegex(out, rf"PRIMARY +{running} ")
        self.assertIn("Vigil: ok", out)

    def test_status_counts_a_report_from_a_clock_ahead_of_this_one(self):
        # The last CI failure: a report made in the second status reads up to (or from a
        # sidecar whose clock runs ahead of the operator's) fell outside [now - 5 min,
        # now) and status said "no report from Vigil in 5 min" of a task reporting ok.
        _, out = self.status_beside_running_sidecars(skew=20.0)
        self.assertIn("Vigil: ok", out)

    # ------------------------------------------------------------ rolling

    def test_rolling_deploy_updates_the_service_after_the_gate(self):
        cluster, arns = self.make_service("staging", blue_green=False)
        release = self.next_revision(cluster)
        self.sidecars("staging", release, lambda t: 0)
        # A leading zero is decimal (bash alone would refuse 08 as a bad octal number).
        r = self.run_deploy("staging", "deploy", "--image", "1.1.0", "--bake", "08")
        self.assert_ok(r)
        svc = self.ecs.describe_services(cluster=cluster, services=["watch-together"])["services"][0]
        self.assertTrue(svc["taskDefinition"].endswith(release))
        self.assertEqual(self.status_of(release), "ACTIVE")

    def test_rolling_failed_gate_updates_the_service_back(self):
        cluster, arns = self.make_service("staging", blue_green=False)
        release = self.next_revision(cluster)
        self.sidecars("staging", release, lambda t: 2)
        r = self.run_deploy("staging", "deploy", DEPLOY_STARTUP_GRACE_SECONDS="3")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        svc = self.ecs.describe_services(cluster=cluster, services=["watch-together"])["services"][0]
        self.assertEqual(svc["taskDefinition"], arns[1])
        self.assertEqual(self.status_of(release), "INACTIVE")

    def test_rolling_rollback_returns_to_the_previous_revision(self):
        cluster, arns = self.make_service("staging", blue_green=False)
        r = self.run_deploy("staging", "rollback")
        self.assert_ok(r)
        svc = self.ecs.describe_services(cluster=cluster, services=["watch-together"])["services"][0]
        self.assertEqual(svc["taskDefinition"], arns[0])
        self.assertEqual(self.status_of(arns[1]), "INACTIVE")

    def test_rolling_rollback_returns_to_the_revision_that_ran_not_the_one_below(self):
        cluster, arns = self.make_service("staging", blue_green=False)
        # terraform apply registers a revision that never runs; the deploy starts from it.
        td = self.ecs.describe_task_definition(taskDefinition=arns[1])["taskDefinition"]
        self.ecs.register_task_definition(**{k: v for k, v in td.items() if k in (
            "family", "networkMode", "requiresCompatibilities", "cpu", "memory", "containerDefinitions")})
        release = self.next_revision(cluster)
        self.sidecars("staging", release, lambda t: 0)
        self.assert_ok(self.run_deploy("staging", "deploy", "--image", "1.1.0"))
        r = self.run_deploy("staging", "rollback")
        self.assert_ok(r)
        svc = self.ecs.describe_services(cluster=cluster, services=["watch-together"])["services"][0]
        self.assertEqual(svc["taskDefinition"], arns[1])
        self.assertEqual(self.status_of(release), "INACTIVE")

    def test_a_service_deployed_otherwise_than_the_tfvars_say_is_refused(self):
        self.make_service("production", blue_green=False)
        r = self.run_deploy("production", "deploy")
        self.assertEqual(r.returncode, 3)
        self.assertIn("deployed by ECS", r.stderr)


if __name__ == "__main__":
    unittest.main()
