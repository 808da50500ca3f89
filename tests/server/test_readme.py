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


def test_python_client_example_runs(start_server):
    """Against the reference rules and sample data, as `make serve` runs them."""
    server = start_server(ROOT / "rules")
    server.wait_health()
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    code = code.replace("localhost:50051", server.address)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    category, size, rest = r.stdout.split(" ", 2)
    assert category and size == "M"                    # the t-shirt size bought before
    assert "('Riverside', 1.2, 1, True)" in rest        # the preferred store first: "only 1 left"


def test_grpcurl_payload_is_valid_proto_json():
    body = re.search(r"-d '(.*?)'", README, re.S).group(1)
    request = json_format.Parse(body, pb.DecideRequest())      # grpcurl uses the same JSON mapping
    assert request.context.channel == pb.CHANNEL_WEB and request.profile["sizes"]["t-shirts"] == "M"
    assert json.loads(body)["customer_id"] == "c-42"


def test_record_events_grpcurl_example_is_accepted_as_written():
    """docs/service.md's RecordEvents example, expanded by the shell as a
    reader's would be, is valid proto JSON and an event the validator takes
    (its timestamp is now, not a date that ages out)."""
    import time

    from engine.profiles.events import validate_event
    from engine.server.events import events_from_pb
    from engine.server.pb.maple.v1 import events_pb2 as epb
    from engine.service.events import Rejected

    doc = (ROOT / "docs" / "service.md").read_text()
    heredoc = re.search(r"RecordEvents <<EOF\n(.*?)\nEOF\n", doc, re.S).group(1)
    body = subprocess.run(["bash", "-c", f"cat <<EOF\n{heredoc}\nEOF\n"], capture_output=True, text=True,
                          check=True).stdout
    events = events_from_pb(json_format.Parse(body, epb.RecordEventsRequest()))
    assert len(events) == 1 and not isinstance(events[0], Rejected)
    _, problems = validate_event(events[0], 0, time.time())
    assert not problems


def test_the_loyalty_card_examples_decide_for_the_sample_customer(tmp_path):
    """README's and docs/service.md's Decide by loyalty card, after `make
    serve`'s import of the sample events: c-1001's stored profile."""
    from engine.ruleset import load
    from engine.server.convert import query_from_pb
    from engine.service import Decider, ProfileStatus, RulesetHolder
    from engine.service.inventory import InventoryHolder, InventoryStores
    from engine.service.sources import open_profile_source

    db = f"sqlite://{tmp_path / 'profiles.db'}"
    r = subprocess.run([sys.executable, "-m", "engine", "profile", "import", "rules/data/sample_events.jsonl",
                        "--store", db, "--rebase", "--data", "rules/data"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    doc = (ROOT / "docs" / "service.md").read_text()
    bodies = [m for m in re.findall(r"(\{\"loyalty_card\".*?\}\})", README + doc)]
    assert len(bodies) == 2
    profiles = open_profile_source(db)
    try:
        decider = Decider(RulesetHolder(load(ROOT / "rules")), profiles,
                          InventoryStores(InventoryHolder.open(ROOT / "rules" / "data")))
        for body in bodies:
            result = decider.decide(query_from_pb(json_format.Parse(body, pb.DecideRequest())))
            assert result.profile_status is ProfileStatus.STORED, body
            assert result.customer_id == "c-1001"              # README: "the answer's customer_id says so"
            assert result.nearby_stores.located_by == "request_store"
    finally:
        profiles.close()
