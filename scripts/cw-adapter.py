"""Speaks CloudWatch's Smithy RPC v2 CBOR protocol in front of moto_server, which does not.

The newest aws-sdk-cloudwatch only speaks rpc-v2-cbor. This proxy takes those requests
(POST /service/GraniteServiceVersion20100801/operation/<Op>, CBOR body, maybe gzipped)
and forwards each as the same call in AWS JSON 1.0, which moto handles for CloudWatch:
the values are typed by botocore's service model for cloudwatch (CBOR tag-1 timestamps
become epoch seconds, blobs base64). moto's JSON answer becomes CBOR again, typed by the
operation's output shape (timestamps as tag 1 with numeric epoch seconds, doubles as
floats, absent members omitted). Errors answer moto's HTTP status with
{"__type": "com.amazonaws.cloudwatch#<ErrorShape>", "message": ...} and the header
x-amzn-query-error: <awsQuery code>;Sender|Receiver, which is what the real service sends
(CloudWatch is @awsQueryCompatible) and what the Rust SDK matches its typed errors on.

Every other request (SNS over awsQuery, /moto-api/..., anything) is passed through
unchanged. Bookkeeping for tests: GET /_adapter/calls lists the CBOR calls seen,
POST /_adapter/reset clears that list (not moto).

Binds 127.0.0.1 only. Usage: cw-adapter.py --port P --upstream http://127.0.0.1:M
(--port 0 picks a free port; the line "cw-adapter listening on 127.0.0.1:P" on stdout
says which, once the socket is listening).
"""

import argparse
import base64
import binascii
import datetime as dt
import gzip
import http.client
import json
import math
import sys
import threading
import time
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.session
import cbor2

SERVICE_NAME = "GraniteServiceVersion20100801"
CBOR_PATH_PREFIX = f"/service/{SERVICE_NAME}/operation/"
SMITHY_NAMESPACE = "com.amazonaws.cloudwatch"
JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
UPSTREAM_TIMEOUT = 60

# Headers that describe one connection, never forwarded (RFC 9110 section 7.6.1).
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "proxy-connection", "te", "trailer", "trailers", "transfer-encoding", "upgrade",
}
# Request headers that go with a translated CBOR call to moto. Authorization carries the
# credential scope moto takes the region (and the service) from.
FORWARDED_CBOR_HEADERS = (
    "Authorization", "X-Amz-Date", "X-Amz-Security-Token", "User-Agent",
    "amz-sdk-invocation-id", "amz-sdk-request",
)


class ProtocolError(Exception):
    """A request the adapter cannot translate; answered without asking moto."""

    def __init__(self, status, shape_name, message, query_code=None, fault="Sender"):
        super().__init__(message)
        self.status = status
        self.shape_name = shape_name
        self.message = message
        self.query_code = query_code or shape_name
        self.fault = fault


# ---------------------------------------------------------------- value conversion

def _epoch_seconds(value, where):
    """A timestamp from CBOR or JSON (datetime, epoch number, or ISO 8601 string)."""
    if isinstance(value, cbor2.CBORTag) and value.tag == 1:
        value = value.value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a timestamp, got a boolean")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.timezone.utc)
            return parsed.timestamp()
    raise ValueError(f"{where}: expected a timestamp, got {type(value).__name__}")


def _to_float(value, where):
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a number, got a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):  # JSON protocols spell non-finite doubles as strings
        return float(value)
    raise ValueError(f"{where}: expected a number, got {type(value).__name__}")


def _to_int(value, where):
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value)
    raise ValueError(f"{where}: expected an integer, got {type(value).__name__}")


def _member_wire_name(name, member_shape):
    return member_shape.serialization.get("name", name)


def cbor_to_json(shape, value, where):
    """A decoded CBOR value, typed by a botocore shape, as AWS JSON 1.0 wants it."""
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a map for {shape.name}")
        out = {}
        for name, item in value.items():
            member = shape.members.get(name)
            if member is None or item is None:  # unknown members are ignored, null is absent
                continue
            out[_member_wire_name(name, member)] = cbor_to_json(member, item, f"{where}.{name}")
        return out
    if kind == "list":
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list for {shape.name}")
        return [None if item is None else cbor_to_json(shape.member, item, f"{where}[{i}]")
                for i, item in enumerate(value)]
    if kind == "map":
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a map for {shape.name}")
        return {str(k): None if v is None else cbor_to_json(shape.value, v, f"{where}.{k}")
                for k, v in value.items()}
    if kind == "timestamp":
        return _epoch_seconds(value, where)
    if kind == "blob":
        if isinstance(value, str):
            value = value.encode()
        if not isinstance(value, (bytes, bytearray)):
            raise ValueError(f"{where}: expected a byte string")
        return base64.b64encode(bytes(value)).decode("ascii")
    if kind in ("double", "float"):
        number = _to_float(value, where)
        if math.isnan(number):
            return "NaN"
        if math.isinf(number):
            return "Infinity" if number > 0 else "-Infinity"
        return number
    if kind in ("integer", "long", "short", "byte", "bigInteger"):
        return _to_int(value, where)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected a boolean")
        return value
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a text string")
        return value
    return value


def _cbor_timestamp(value, where):
    seconds = _epoch_seconds(value, where)
    if isinstance(seconds, float):
        seconds = round(seconds, 3)  # Smithy timestamps carry milliseconds at most
        if seconds.is_integer():
            seconds = int(seconds)
    return cbor2.CBORTag(1, seconds)


def json_to_cbor(shape, value, where):
    """A JSON value from moto, typed by a botocore shape, as rpc-v2-cbor wants it."""
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object for {shape.name}")
        out = {}
        for name, member in shape.members.items():
            item = value.get(_member_wire_name(name, member))
            if item is None:
                continue
            out[name] = json_to_cbor(member, item, f"{where}.{name}")
        return out
    if kind == "list":
        return [None if item is None else json_to_cbor(shape.member, item, f"{where}[{i}]")
                for i, item in enumerate(value)]
    if kind == "map":
        return {k: None if v is None else json_to_cbor(shape.value, v, f"{where}.{k}")
                for k, v in value.items()}
    if kind == "timestamp":
        return _cbor_timestamp(value, where)
    if kind == "blob":
        return base64.b64decode(value) if isinstance(value, str) else bytes(value)
    if kind in ("double", "float"):
        return _to_float(value, where)
    if kind in ("integer", "long", "short", "byte", "bigInteger"):
        return _to_int(value, where)
    if kind == "boolean":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if kind == "string":
        return value if isinstance(value, str) else str(value)
    return value


# ---------------------------------------------------------------- the proxy

class Adapter:
    """State shared by the handler threads: the model, the upstream, the call log."""

    def __init__(self, upstream):
        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SystemExit(f"cw-adapter: --upstream must be http(s)://host:port, got {upstream!r}")
        self.upstream_https = parts.scheme == "https"
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or (443 if self.upstream_https else 80)
        self.upstream_netloc = parts.netloc
        self.model = botocore.session.get_session().get_service_model("cloudwatch")
        self.operations = set(self.model.operation_names)
        self.all_error_shapes = [self.model.shape_for(n) for n in self.model.shape_names
                                 if self.model.shape_for(n).metadata.get("exception")]
        self.calls = []
        self.lock = threading.Lock()

    def connect(self):
        cls = http.client.HTTPSConnection if self.upstream_https else http.client.HTTPConnection
        return cls(self.upstream_host, self.upstream_port, timeout=UPSTREAM_TIMEOUT)

    def record(self, entry):
        with self.lock:
            self.calls.append(entry)

    def error_shape(self, operation, upstream_type, query_code):
        """The model's error shape for moto's __type / awsQuery code, or None."""
        for pool in (operation.error_shapes, self.all_error_shapes):
            for shape in pool:
                if upstream_type and shape.name == upstream_type:
                    return shape
            for shape in pool:
                if query_code and shape.error_code == query_code:
                    return shape
                if upstream_type and shape.error_code == upstream_type:
                    return shape
        return None


def _sanitize_type(value):
    """'aws.protocoltests#Foo:http://...' -> 'Foo', as the SDKs do with __type."""
    value = value.split(":", 1)[0]
    return value.rsplit("#", 1)[-1]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cw-adapter"
    adapter: Adapter = None  # set in main()

    # ---- plumbing

    def log_message(self, fmt, *args):  # quiet: one line per CBOR call is logged instead
        pass

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = self.headers.get("Content-Length")
        if length is None:
            return None
        return self.rfile.read(int(length))

    def _send(self, status, headers, body, reason=None):
        self.send_response_only(status, reason)
        if not any(name.lower() == "date" for name, _ in headers):
            self.send_header("Date", self.date_time_string())
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _dispatch(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/_adapter/calls" and self.command == "GET":
            self._read_body()
            with self.adapter.lock:
                body = json.dumps(self.adapter.calls).encode()
            self._send(200, [("Content-Type", "application/json")], body)
        elif path == "/_adapter/reset" and self.command == "POST":
            self._read_body()
            with self.adapter.lock:
                self.adapter.calls.clear()
            self._send(200, [("Content-Type", "application/json")], b"{}")
        elif path.startswith(CBOR_PATH_PREFIX) and self.command == "POST":
            self._cbor_call(path[len(CBOR_PATH_PREFIX):])
        else:
            self._passthrough()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _dispatch

    # ---- pass-through

    def _passthrough(self):
        body = self._read_body()
        try:
            conn = self.adapter.connect()
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            has_host = False
            for name, value in self.headers.items():
                lower = name.lower()
                if lower in HOP_BY_HOP or lower == "content-length":
                    continue
                has_host = has_host or lower == "host"
                conn.putheader(name, value)
            if not has_host:
                conn.putheader("Host", self.adapter.upstream_netloc)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            headers = resp.getheaders()
            conn.close()
        except OSError as e:
            msg = f"cw-adapter: upstream unreachable: {e}\n".encode()
            self._send(502, [("Content-Type", "text/plain")], msg)
            return
        out = [(n, v) for n, v in headers
               if n.lower() not in HOP_BY_HOP and n.lower() != "content-length"]
        if self.command == "HEAD":
            # No body came back; keep the length the upstream announced.
            self.send_response_only(resp.status, resp.reason)
            for name, value in out:
                self.send_header(name, value)
            length = resp.getheader("Content-Length")
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            return
        self._send(resp.status, out, data, resp.reason)

    # ---- rpc-v2-cbor

    def _cbor_call(self, op_name):
        started = time.monotonic()
        raw = self._read_body() or b""
        encoding = self.headers.get("Content-Encoding")
        entry = {"service": "cloudwatch", "operation": op_name, "wire_bytes": len(raw),
                 "body_bytes": None, "content_encoding": encoding, "status": None,
                 "datums": None}
        try:
            status, headers, body = self._translate(op_name, raw, encoding, entry)
        except ProtocolError as e:
            status, headers, body = self._error_answer(e.status, e.shape_name, e.message,
                                                       e.query_code, e.fault)
        entry["status"] = status
        self.adapter.record(entry)
        took = (time.monotonic() - started) * 1000
        print(f"cw-adapter: {op_name} wire={entry['wire_bytes']}B body={entry['body_bytes']}B"
              f" encoding={encoding or '-'} -> {status} ({took:.1f} ms)",
              file=sys.stderr, flush=True)
        self._send(status, headers, body)

    def _translate(self, op_name, raw, encoding, entry):
        body = raw
        for coding in [c.strip().lower() for c in (encoding or "").split(",") if c.strip()][::-1]:
            if coding == "gzip":
                try:
                    body = gzip.decompress(body)
                except (OSError, EOFError, zlib.error) as e:
                    raise ProtocolError(400, "SerializationException", f"bad gzip body: {e}")
            elif coding != "identity":
                raise ProtocolError(415, "UnsupportedMediaTypeException",
                                    f"unsupported Content-Encoding {coding!r}")
        entry["body_bytes"] = len(body)

        if op_name not in self.adapter.operations:
            raise ProtocolError(404, "UnknownOperationException",
                                f"unknown operation {op_name!r} for {SERVICE_NAME}")
        operation = self.adapter.model.operation_model(op_name)
        try:
            decoded = cbor2.loads(body) if body else {}
        except (cbor2.CBORDecodeError, ValueError) as e:
            raise ProtocolError(400, "SerializationException", f"body is not CBOR: {e}")
        if decoded is None:
            decoded = {}
        if isinstance(decoded, dict) and isinstance(decoded.get("MetricData"), list):
            entry["datums"] = len(decoded["MetricData"])
        try:
            params = (cbor_to_json(operation.input_shape, decoded, op_name)
                      if operation.input_shape is not None else {})
        except (ValueError, TypeError, binascii.Error) as e:
            raise ProtocolError(400, "SerializationException", str(e))

        payload = json.dumps(params).encode()
        try:
            conn = self.adapter.connect()
            conn.putrequest("POST", "/", skip_accept_encoding=True)
            conn.putheader("Content-Type", JSON_CONTENT_TYPE)
            conn.putheader("X-Amz-Target", f"{SERVICE_NAME}.{op_name}")
            for name in FORWARDED_CBOR_HEADERS:
                value = self.headers.get(name)
                if value is not None:
                    conn.putheader(name, value)
            if self.headers.get("Authorization") is None:
                # moto routes and picks the region by the credential scope; default it.
                day = time.strftime("%Y%m%d", time.gmtime())
                conn.putheader("Authorization",
                               f"AWS4-HMAC-SHA256 Credential=testing/{day}/us-east-1/monitoring/"
                               "aws4_request, SignedHeaders=host, Signature=0")
            conn.putheader("Content-Length", str(len(payload)))
            conn.endheaders(payload)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
        except OSError as e:
            raise ProtocolError(502, "InternalServiceFault", f"upstream unreachable: {e}",
                                "InternalServiceError", "Receiver")

        request_id = resp.getheader("x-amzn-requestid")
        extra = [("x-amzn-requestid", request_id)] if request_id else []

        if resp.status >= 300:
            return self._upstream_error(operation, resp, data, extra)

        try:
            answer = json.loads(data) if data.strip() else {}
        except ValueError:
            raise ProtocolError(502, "InternalServiceFault",
                                f"upstream answered {resp.status} with non-JSON body",
                                "InternalServiceError", "Receiver")
        try:
            out = (json_to_cbor(operation.output_shape, answer, op_name)
                   if operation.output_shape is not None else {})
        except (ValueError, TypeError, binascii.Error) as e:
            raise ProtocolError(502, "InternalServiceFault",
                                f"cannot convert upstream answer: {e}",
                                "InternalServiceError", "Receiver")
        headers = [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")]
        return resp.status, headers + extra, cbor2.dumps(out)

    def _upstream_error(self, operation, resp, data, extra):
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict):
                doc = {}
        except ValueError:
            doc = {}
        upstream_type = _sanitize_type(str(doc.get("__type") or doc.get("code") or "")) or None
        message = doc.get("message") or doc.get("Message")
        if message is None:
            message = data.decode("utf-8", "replace").strip()[:2000] or resp.reason
        query_code, fault = None, None
        query_header = resp.getheader("x-amzn-query-error")
        if query_header and ";" in query_header:
            query_code, fault = query_header.split(";", 1)
        shape = self.adapter.error_shape(operation, upstream_type, query_code)
        if shape is not None:
            shape_name = shape.name
            query_code = shape.error_code or query_code or shape.name
            fault = "Sender" if shape.metadata.get("senderFault") else (fault or "Receiver")
        elif upstream_type:
            shape_name = upstream_type
        else:
            shape_name = "InternalServiceFault" if resp.status >= 500 else "ValidationError"
            query_code = query_code or ("InternalServiceError" if resp.status >= 500 else shape_name)
        if fault is None:
            fault = "Receiver" if resp.status >= 500 else "Sender"
        status, headers, body = self._error_answer(resp.status, shape_name, message,
                                                   query_code or shape_name, fault)
        return status, headers + extra, body

    @staticmethod
    def _error_answer(status, shape_name, message, query_code, fault):
        body = cbor2.dumps({"__type": f"{SMITHY_NAMESPACE}#{shape_name}", "message": message})
        headers = [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor"),
                   ("x-amzn-query-error", f"{query_code};{fault}")]
        return status, headers, body


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1; 0 picks one")
    parser.add_argument("--upstream", required=True, help="moto_server's URL, http://127.0.0.1:M")
    args = parser.parse_args(argv)

    Handler.adapter = Adapter(args.upstream)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"cw-adapter listening on {host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
