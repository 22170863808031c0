"""Tests for cw-adapter.py against a real moto_server.

Run from the repository root:
    .venv/bin/python -m unittest discover -s scripts -p 'test_cw_adapter.py'

Starts its own moto_server and adapter on free ports and stops both afterwards.
"""

import gzip
import json
import os
import queue
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid

import cbor2

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
PYTHON = os.path.join(VENV_BIN, "python") if os.path.exists(os.path.join(VENV_BIN, "python")) else sys.executable
MOTO_SERVER = os.path.join(VENV_BIN, "moto_server")
ADAPTER = os.path.join(HERE, "cw-adapter.py")

SERVICE = "GraniteServiceVersion20100801"
REGION = "us-east-1"
AUTH = ("AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/monitoring/aws4_request, "
        "SignedHeaders=host, Signature=x")
STARTUP_TIMEOUT = 30.0


# ---------------------------------------------------------------- helpers

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
    raise RuntimeError(f"timed out waiting for {what}")


def stop_process(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class Tag:
    """A CBOR tag as found on the wire (the raw decoder below keeps tags visible)."""

    def __init__(self, tag, value):
        self.tag, self.value = tag, value

    def __repr__(self):
        return f"Tag({self.tag}, {self.value!r})"


def raw_cbor(data):
    """Decodes CBOR keeping the wire types: tags stay Tag, floats stay float, ints int.

    cbor2 would turn both tag 0 (date string) and tag 1 (epoch) into a datetime; the Rust
    SDK only accepts tag 1 with a number, so the tests look at the wire.
    """
    pos = 0

    def arg(info):
        nonlocal pos
        if info < 24:
            return info
        size = {24: 1, 25: 2, 26: 4, 27: 8}.get(info)
        if size is None:
            return None  # indefinite length
        value = int.from_bytes(data[pos:pos + size], "big")
        pos += size
        return value

    def item():
        nonlocal pos
        head = data[pos]
        pos += 1
        major, info = head >> 5, head & 0x1F
        if major == 7:
            if info == 25:
                value = struct.unpack(">e", data[pos:pos + 2])[0]
                pos += 2
                return value
            if info == 26:
                value = struct.unpack(">f", data[pos:pos + 4])[0]
                pos += 4
                return value
            if info == 27:
                value = struct.unpack(">d", data[pos:pos + 8])[0]
                pos += 8
                return value
            return {20: False, 21: True, 22: None, 23: None}[info]
        n = arg(info)
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major in (2, 3):
            if n is None:
                parts = []
                while data[pos] != 0xFF:
                    parts.append(item())
                pos += 1
                return (b"" if major == 2 else "").join(parts)
            chunk = data[pos:pos + n]
            pos += n
            return bytes(chunk) if major == 2 else chunk.decode("utf-8")
        if major == 4:
            out = []
            while (n is None and data[pos] != 0xFF) or (n is not None and len(out) < n):
                out.append(item())
            if n is None:
                pos += 1
            return out
        if major == 5:
            out = {}
            while (n is None and data[pos] != 0xFF) or (n is not None and len(out) < n):
                key = item()
                out[key] = item()
            if n is None:
                pos += 1
            return out
        if major == 6:
            return Tag(n, item())
        raise ValueError(f"bad CBOR head {head:#x}")

    value = item()
    if pos != len(data):
        raise ValueError("trailing bytes after CBOR item")
    return value


def ts(epoch):
    """A timestamp as the Rust SDK encodes it: tag 1 around a double."""
    return cbor2.CBORTag(1, float(epoch))


# ---------------------------------------------------------------- the tests

class CwAdapterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.logdir = tempfile.TemporaryDirectory(prefix="cw-adapter-test-")
        cls.addClassCleanup(cls.logdir.cleanup)

        cls.moto_port = free_port()
        cls.moto_log = open(os.path.join(cls.logdir.name, "moto.log"), "wb")
        cls.addClassCleanup(cls.moto_log.close)
        cls.moto = subprocess.Popen(
            [MOTO_SERVER, "-H", "127.0.0.1", "-p", str(cls.moto_port)],
            stdout=cls.moto_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        cls.addClassCleanup(stop_process, cls.moto)
        cls.moto_url = f"http://127.0.0.1:{cls.moto_port}"

        def moto_up():
            if cls.moto.poll() is not None:
                raise RuntimeError(f"moto_server exited with {cls.moto.returncode}")
            try:
                with urllib.request.urlopen(cls.moto_url + "/moto-api/", timeout=1):
                    return True
            except (urllib.error.URLError, OSError):
                return False

        wait_until(moto_up, STARTUP_TIMEOUT, "moto_server")

        cls.adapter_log_path = os.path.join(cls.logdir.name, "adapter.log")
        cls.adapter_log = open(cls.adapter_log_path, "wb")
        cls.addClassCleanup(cls.adapter_log.close)
        cls.adapter = subprocess.Popen(
            [PYTHON, ADAPTER, "--port", "0", "--upstream", cls.moto_url],
            stdout=subprocess.PIPE, stderr=cls.adapter_log, stdin=subprocess.DEVNULL)
        cls.addClassCleanup(stop_process, cls.adapter)
        cls.addClassCleanup(cls.adapter.stdout.close)

        lines = queue.Queue()
        threading.Thread(target=lambda: lines.put(cls.adapter.stdout.readline()),
                         daemon=True).start()
        try:
            line = lines.get(timeout=STARTUP_TIMEOUT).decode().strip()
        except queue.Empty:
            line = None
        prefix = "cw-adapter listening on 127.0.0.1:"
        if line is None or not line.startswith(prefix):
            cls.adapter_log.flush()
            with open(cls.adapter_log_path, "rb") as f:
                log = f.read()[-2000:].decode("utf-8", "replace")
            raise RuntimeError(f"cw-adapter did not start (first line {line!r}); stderr:\n{log}")
        cls.port = int(line[len(prefix):])
        assert cls.port != 0
        cls.base = f"http://127.0.0.1:{cls.port}"

    # ---- request helpers

    def http(self, method, path, body=None, headers=None):
        req = urllib.request.Request(self.base + path, data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.headers, e.read()

    def cbor_request(self, operation, params, gzipped=False):
        """Returns (status, headers, raw body, wire body sent, plain body sent)."""
        plain = cbor2.dumps(params)
        wire = gzip.compress(plain) if gzipped else plain
        headers = {
            "smithy-protocol": "rpc-v2-cbor",
            "Content-Type": "application/cbor",
            "Accept": "application/cbor",
            "Authorization": AUTH,
            "X-Amz-Date": "20260101T000000Z",
        }
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        status, resp_headers, body = self.http(
            "POST", f"/service/{SERVICE}/operation/{operation}", wire, headers)
        return status, resp_headers, body, wire, plain

    def cbor(self, operation, params, gzipped=False):
        status, headers, body, _, _ = self.cbor_request(operation, params, gzipped)
        self.assertEqual(status, 200, f"{operation}: {status} {body!r}")
        self.assertEqual(headers.get("Content-Type"), "application/cbor")
        self.assertEqual(headers.get("smithy-protocol"), "rpc-v2-cbor")
        return raw_cbor(body)

    def assert_timestamp(self, value, near=None):
        self.assertIsInstance(value, Tag, f"expected a CBOR tag, got {value!r}")
        self.assertEqual(value.tag, 1, "timestamps must be tag 1 (epoch), not tag 0")
        self.assertIsInstance(value.value, (int, float))
        self.assertNotIsInstance(value.value, bool)
        if near is not None:
            self.assertLess(abs(value.value - near), 3600)
        return value.value

    def calls(self):
        status, _, body = self.http("GET", "/_adapter/calls")
        self.assertEqual(status, 200)
        return json.loads(body)

    def stats(self, namespace, name, start, end, dimensions=None, period=3600):
        params = {
            "Namespace": namespace, "MetricName": name,
            "StartTime": ts(start), "EndTime": ts(end), "Period": period,
            "Statistics": ["SampleCount", "Sum", "Minimum", "Maximum", "Average"],
        }
        if dimensions:
            params["Dimensions"] = dimensions
        out = self.cbor("GetMetricStatistics", params)
        self.assertEqual(out["Label"], name)
        return out["Datapoints"]

    @staticmethod
    def namespace():
        return f"Vigil/Test/{uuid.uuid4().hex[:10]}"

    @staticmethod
    def when():
        """A whole second a little in the past; queries use [when - 600, when + 600)."""
        return float(int(time.time()) - 120)

    def assert_one_datapoint(self, datapoints, when, sample_count, total, minimum, maximum):
        self.assertEqual(len(datapoints), 1, datapoints)
        point = datapoints[0]
        self.assert_timestamp(point["Timestamp"], near=when)
        for stat in ("SampleCount", "Sum", "Minimum", "Maximum", "Average"):
            self.assertIsInstance(point[stat], float, f"{stat} must be a CBOR float")
        self.assertEqual(point["SampleCount"], sample_count)
        self.assertEqual(point["Sum"], total)
        self.assertEqual(point["Minimum"], minimum)
        self.assertEqual(point["Maximum"], maximum)
        self.assertEqual(point["Average"], total / sample_count)
        return point

    # ---- PutMetricData and reading back

    def test_put_value_then_statistics(self):
        ns, when = self.namespace(), self.when()
        data = [{"MetricName": "latency", "Value": v, "Timestamp": ts(when)}
                for v in (1.5, 4.0, 0.25)]
        out = self.cbor("PutMetricData", {"Namespace": ns, "MetricData": data})
        self.assertEqual(out, {}, "an operation without output answers an empty map")
        points = self.stats(ns, "latency", when - 600, when + 600)
        self.assert_one_datapoint(points, when, 3.0, 5.75, 0.25, 4.0)

    def test_put_values_and_counts(self):
        ns, when = self.namespace(), self.when()
        datum = {"MetricName": "hist", "Values": [1.0, 2.5, 10.0], "Counts": [2.0, 1.0, 3.0],
                 "Timestamp": ts(when)}
        self.cbor("PutMetricData", {"Namespace": ns, "MetricData": [datum]})
        points = self.stats(ns, "hist", when - 600, when + 600)
        # 2 x 1.0 + 1 x 2.5 + 3 x 10.0
        self.assert_one_datapoint(points, when, 6.0, 34.5, 1.0, 10.0)

    def test_put_statistic_values(self):
        ns, when = self.namespace(), self.when()
        datum = {"MetricName": "agg", "Timestamp": ts(when),
                 "StatisticValues": {"SampleCount": 4.0, "Sum": 10.0, "Minimum": 1.0, "Maximum": 4.0}}
        self.cbor("PutMetricData", {"Namespace": ns, "MetricData": [datum]})
        points = self.stats(ns, "agg", when - 600, when + 600)
        self.assert_one_datapoint(points, when, 4.0, 10.0, 1.0, 4.0)

    def test_put_dimensions_and_unit_then_list_metrics(self):
        ns, when = self.namespace(), self.when()
        dims = [{"Name": "host", "Value": "db-1"}, {"Name": "role", "Value": "primary"}]
        datum = {"MetricName": "lag", "Value": 2.0, "Unit": "Seconds", "Dimensions": dims,
                 "StorageResolution": 1, "Timestamp": ts(when)}
        self.cbor("PutMetricData", {"Namespace": ns, "MetricData": [datum]})

        points = self.stats(ns, "lag", when - 600, when + 600, dimensions=dims)
        point = self.assert_one_datapoint(points, when, 1.0, 2.0, 2.0, 2.0)
        self.assertEqual(point["Unit"], "Seconds")

        out = self.cbor("ListMetrics", {"Namespace": ns})
        self.assertEqual(len(out["Metrics"]), 1, out)
        metric = out["Metrics"][0]
        self.assertEqual(metric["Namespace"], ns)
        self.assertEqual(metric["MetricName"], "lag")
        self.assertEqual(sorted((d["Name"], d["Value"]) for d in metric["Dimensions"]),
                         [("host", "db-1"), ("role", "primary")])
        self.assertNotIn("NextToken", out, "absent members are omitted")

    def test_put_gzip_encoded(self):
        ns, when = self.namespace(), self.when()
        data = [{"MetricName": "gz", "Value": float(i), "Timestamp": ts(when),
                 "Dimensions": [{"Name": "padding", "Value": "x" * 100}]} for i in range(1, 21)]
        status, headers, body, wire, plain = self.cbor_request(
            "PutMetricData", {"Namespace": ns, "MetricData": data}, gzipped=True)
        self.assertEqual(status, 200, body)
        self.assertEqual(raw_cbor(body), {})
        self.assertLess(len(wire), len(plain))
        points = self.stats(ns, "gz", when - 600, when + 600,
                            dimensions=[{"Name": "padding", "Value": "x" * 100}])
        self.assert_one_datapoint(points, when, 20.0, 210.0, 1.0, 20.0)

    def test_get_metric_data(self):
        ns, when = self.namespace(), self.when()
        data = [{"MetricName": "reqs", "Value": v, "Timestamp": ts(when)} for v in (3.0, 4.5)]
        self.cbor("PutMetricData", {"Namespace": ns, "MetricData": data})
        query = {
            "StartTime": ts(when - 600), "EndTime": ts(when + 600),
            "MetricDataQueries": [
                {"Id": "total", "MetricStat": {"Metric": {"Namespace": ns, "MetricName": "reqs"},
                                                "Period": 3600, "Stat": "Sum"}},
                {"Id": "count", "Label": "how many",
                 "MetricStat": {"Metric": {"Namespace": ns, "MetricName": "reqs"},
                                "Period": 3600, "Stat": "SampleCount"}},
            ],
        }
        out = self.cbor("GetMetricData", query)
        results = {r["Id"]: r for r in out["MetricDataResults"]}
        self.assertEqual(set(results), {"total", "count"})
        self.assertEqual(results["total"]["Values"], [7.5])
        self.assertEqual(results["count"]["Values"], [2.0])
        self.assertEqual(results["count"]["Label"], "how many")
        for result in results.values():
            self.assertEqual(result["StatusCode"], "Complete")
            self.assertEqual(len(result["Timestamps"]), 1)
            self.assert_timestamp(result["Timestamps"][0], near=when)
            self.assertIsInstance(result["Values"][0], float)

        # cbor2 (like any CBOR decoder) also reads the answer, timestamps as datetimes.
        _, _, body, _, _ = self.cbor_request("GetMetricData", query)
        decoded = cbor2.loads(body)
        stamp = decoded["MetricDataResults"][0]["Timestamps"][0]
        self.assertLess(abs(stamp.timestamp() - when), 3600)

    # ---- dashboards

    def test_dashboards(self):
        name = f"vigil-{uuid.uuid4().hex[:8]}"
        body = json.dumps({"widgets": [{"type": "text", "x": 0, "y": 0, "width": 6, "height": 3,
                                        "properties": {"markdown": "# Vigil \u2713"}}]})
        out = self.cbor("PutDashboard", {"DashboardName": name, "DashboardBody": body})
        self.assertEqual(out.get("DashboardValidationMessages", []), [])

        out = self.cbor("GetDashboard", {"DashboardName": name})
        self.assertEqual(out["DashboardBody"], body)
        self.assertEqual(out["DashboardName"], name)
        self.assertTrue(out["DashboardArn"].endswith(f":dashboard/{name}"))

        out = self.cbor("ListDashboards", {"DashboardNamePrefix": name})
        self.assertEqual(len(out["DashboardEntries"]), 1)
        entry = out["DashboardEntries"][0]
        self.assertEqual(entry["DashboardName"], name)
        self.assert_timestamp(entry["LastModified"], near=time.time())
        self.assertIsInstance(entry["Size"], int)

        self.assertEqual(self.cbor("DeleteDashboards", {"DashboardNames": [name]}), {})
        out = self.cbor("ListDashboards", {"DashboardNamePrefix": name})
        self.assertEqual(out.get("DashboardEntries", []), [])

    # ---- errors

    def test_missing_dashboard_is_a_typed_error(self):
        status, headers, body, _, _ = self.cbor_request(
            "GetDashboard", {"DashboardName": f"missing-{uuid.uuid4().hex[:8]}"})
        self.assertEqual(status, 404)
        self.assertEqual(headers.get("Content-Type"), "application/cbor")
        self.assertEqual(headers.get("smithy-protocol"), "rpc-v2-cbor")
        err = raw_cbor(body)
        self.assertEqual(err["__type"], "com.amazonaws.cloudwatch#DashboardNotFoundError")
        self.assertIn("does not exist", err["message"])
        # The Rust SDK takes the code from this header (CloudWatch is awsQueryCompatible)
        # and matches "ResourceNotFound" to GetDashboardError::DashboardNotFoundError.
        self.assertEqual(headers.get("x-amzn-query-error"), "ResourceNotFound;Sender")

    def test_invalid_parameters_are_a_typed_error(self):
        when = self.when()
        status, headers, body, _, _ = self.cbor_request("GetMetricStatistics", {
            "Namespace": "x", "MetricName": "y", "StartTime": ts(when), "EndTime": ts(when + 60),
            "Period": 60})
        self.assertEqual(status, 400)
        err = raw_cbor(body)
        self.assertEqual(err["__type"],
                         "com.amazonaws.cloudwatch#InvalidParameterCombinationException")
        self.assertEqual(headers.get("x-amzn-query-error"), "InvalidParameterCombination;Sender")
        self.assertIsInstance(err["message"], str)

        status, headers, body, _, _ = self.cbor_request("PutMetricData", {
            "Namespace": "x", "MetricData": [{"MetricName": "m", "Values": [1.0, 2.0],
                                              "Counts": [1.0]}]})
        self.assertEqual(status, 400)
        self.assertEqual(raw_cbor(body)["__type"],
                         "com.amazonaws.cloudwatch#InvalidParameterValueException")
        self.assertEqual(headers.get("x-amzn-query-error"), "InvalidParameterValue;Sender")

    def test_unknown_operation_and_bad_body(self):
        status, _, body, _, _ = self.cbor_request("NoSuchOperation", {})
        self.assertEqual(status, 404)
        self.assertIn("__type", raw_cbor(body))
        status, _, body = self.http(
            "POST", f"/service/{SERVICE}/operation/ListMetrics", b"\xff\x00 not cbor",
            {"smithy-protocol": "rpc-v2-cbor", "Content-Type": "application/cbor",
             "Authorization": AUTH})
        self.assertEqual(status, 400)
        self.assertIn("__type", raw_cbor(body))

    # ---- bookkeeping

    def test_calls_are_recorded_with_sizes(self):
        status, _, _ = self.http("POST", "/_adapter/reset", b"")
        self.assertEqual(status, 200)
        self.assertEqual(self.calls(), [])
        ns, when = self.namespace(), self.when()
        params = {"Namespace": ns, "MetricData": [
            {"MetricName": "c", "Value": 1.0, "Timestamp": ts(when),
             "Dimensions": [{"Name": "k", "Value": "v" * 200}]}]}
        _, _, _, wire1, plain1 = self.cbor_request("PutMetricData", params)
        _, _, _, wire2, plain2 = self.cbor_request("PutMetricData", params, gzipped=True)
        status, _, _, wire3, _ = self.cbor_request("GetDashboard", {"DashboardName": "nope-" + ns})
        self.assertEqual(status, 404)
        self.http("GET", "/moto-api/data.json")  # pass-through: not a CBOR call

        calls = self.calls()
        self.assertEqual(calls, [
            {"service": "cloudwatch", "operation": "PutMetricData", "wire_bytes": len(wire1),
             "body_bytes": len(plain1), "content_encoding": None, "status": 200, "datums": 1},
            {"service": "cloudwatch", "operation": "PutMetricData", "wire_bytes": len(wire2),
             "body_bytes": len(plain2), "content_encoding": "gzip", "status": 200, "datums": 1},
            {"service": "cloudwatch", "operation": "GetDashboard", "wire_bytes": len(wire3),
             "body_bytes": len(wire3), "content_encoding": None, "status": 404, "datums": None},
        ])
        self.assertLess(calls[1]["wire_bytes"], calls[1]["body_bytes"])

        self.http("POST", "/_adapter/reset", b"")
        self.assertEqual(self.calls(), [])

    # ---- pass-through

    def sns(self, params):
        body = urllib.parse.urlencode(params).encode()
        return self.http("POST", "/", body, {
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Authorization": AUTH.replace("/monitoring/", "/sns/"),
        })

    def test_sns_query_passes_through(self):
        topic = f"vigil-{uuid.uuid4().hex[:8]}"
        status, _, body = self.sns({"Action": "CreateTopic", "Version": "2010-03-31",
                                    "Name": topic})
        self.assertEqual(status, 200, body)
        arn = f"arn:aws:sns:{REGION}:123456789012:{topic}"
        self.assertIn(f"<TopicArn>{arn}</TopicArn>".encode(), body)

        status, _, body = self.sns({"Action": "Publish", "Version": "2010-03-31",
                                    "TopicArn": arn, "Message": "disk full \u2603",
                                    "Subject": "vigil"})
        self.assertEqual(status, 200, body)
        self.assertIn(b"<MessageId>", body)

        status, _, body = self.sns({"Action": "Publish", "Version": "2010-03-31",
                                    "TopicArn": arn + "-missing", "Message": "x"})
        self.assertEqual(status, 404, body)
        self.assertIn(b"NotFound", body)

        # moto's own API answers through the adapter byte for byte.
        status, headers, via_adapter = self.http("GET", "/moto-api/data.json")
        self.assertEqual(status, 200)
        with urllib.request.urlopen(self.moto_url + "/moto-api/data.json", timeout=30) as r:
            direct = r.read()
        self.assertEqual(json.loads(via_adapter), json.loads(direct))
        self.assertIn(topic, via_adapter.decode())

    def test_passthrough_keeps_query_string_and_method(self):
        status, _, body = self.http("GET", "/moto-api/data.json?service=sns")
        self.assertEqual(status, 200)
        self.assertIsInstance(json.loads(body), dict)
        status, _, _ = self.http("HEAD", "/moto-api/data.json")
        self.assertEqual(status, 200)


if __name__ == "__main__":
    unittest.main()
