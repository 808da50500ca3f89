"""The README's client examples work as written (against a real server)."""
from __future__ import annotations

import json
import re
import subprocess
import sys

from google.protobuf import json_format

from engine.server.pb.maple.v1 import decision_pb2 as pb

from .conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_python_client_example_runs(server):
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    code = code.replace("localhost:50051", server.address)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    version, category, size = r.stdout.split()
    assert len(version) == 16 and category == "new-arrivals" and size == "42"


def test_grpcurl_payload_is_valid_proto_json():
    body = re.search(r"-d '(.*?)'", README, re.S).group(1)
    request = json_format.Parse(body, pb.DecideRequest())      # grpcurl uses the same JSON mapping
    assert request.context.channel == pb.CHANNEL_WEB and request.profile["sizes"]["shoes"] == "42"
    assert json.loads(body)["customer_id"] == "c-42"
