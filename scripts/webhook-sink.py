"""A webhook receiver for a laptop: prints every POSTed JSON body, one line each.

dev-start.sh points Vigil's heartbeat receiver here, so the Watchdog's pages can be
seen in .dev/webhooks.log. Binds 127.0.0.1 only. Usage: webhook-sink.py PORT
"""

import json
import sys
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            summary = json.loads(body)
            line = json.dumps({"at": datetime.now(timezone.utc).isoformat(), "path": self.path,
                               "status": summary.get("status"),
                               "alerts": [a["labels"].get("alertname") for a in summary.get("alerts", [])]})
        except (ValueError, AttributeError, KeyError):
            line = body.decode("utf-8", "replace")
        print(line, flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
