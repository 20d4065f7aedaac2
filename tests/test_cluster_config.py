"""cluster.yaml: valid for `ray up` (same checks, offline) and secure as docs/architecture.md requires.

`ray up` runs prepare_config (merge with the AWS defaults, docker and worker-count checks) and then
validate_config (Ray's JSON schema plus consistency checks) before it contacts AWS; so do these tests.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import ray
import yaml
from jsonschema import ValidationError
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parent.parent / "cluster.yaml"
PUBLIC = {"0.0.0.0/0", "::/0"}
AUTH_ENV = re.compile(r"(?:^|[;&|(\s])(?:export\s+)?RAY_AUTH_MODE=token(?:;|\s)")


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def validated(config: dict) -> dict:
    """What `ray up` checks before launching anything; returns the prepared config."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def public_rules(rules: list[dict]) -> list[dict]:
    """Inbound rules that admit anyone on the internet."""
    return [
        r
        for r in rules
        if {ip.get("CidrIp") for ip in r.get("IpRanges", [])} & PUBLIC
        or {ip.get("CidrIpv6") for ip in r.get("Ipv6Ranges", [])} & PUBLIC
    ]


def only_ssh_public(rules: list[dict]) -> bool:
    return all(
        r.get("IpProtocol") == "tcp" and r.get("FromPort") == 22 and r.get("ToPort") == 22
        for r in public_rules(rules)
    )


def start_commands(config: dict) -> list[str]:
    cmds = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    return [c for c in cmds if "ray start" in c]


def has_auth_mode_token(cmd: str) -> bool:
    m = AUTH_ENV.search(cmd)
    return bool(m) and m.start() < cmd.index("ray start")


def test_valid_for_ray_up(raw):
    prepared = validated(raw)
    assert prepared["provider"]["type"] == "aws" and prepared["provider"]["region"]
    assert prepared["cluster_name"] == "earlyphase"
    assert prepared["available_node_types"][prepared["head_node_type"]]["max_workers"] == 0


@pytest.mark.parametrize(
    "break_it",
    [
        pytest.param(lambda c: c.update(not_a_ray_key=1), id="unknown-top-level-key"),
        pytest.param(lambda c: c.update(max_workers="many"), id="max_workers-not-int"),
        pytest.param(lambda c: c["available_node_types"]["gpu_worker"].pop("resources"), id="no-resources"),
        pytest.param(lambda c: c["provider"]["security_group"].update(Ports=[6379]), id="sg-unknown-field"),
        pytest.param(lambda c: c["docker"].update(imagee="x"), id="docker-typo"),
        pytest.param(lambda c: c.update(head_node_type="nope"), id="unknown-head-type"),
        pytest.param(lambda c: c["available_node_types"]["gpu_worker"].update(min_workers=99), id="min>max"),
    ],
)
def test_malformed_copy_rejected(raw, break_it):
    bad = copy.deepcopy(raw)
    break_it(bad)
    with pytest.raises((ValidationError, ValueError)):
        validated(bad)


def test_security_group_opens_only_ssh_to_internet(raw):
    provider = raw["provider"]
    sg = provider["security_group"]
    assert sg["GroupName"]
    extra = sg.get("IpPermissions", [])
    # Ray always adds SSH-from-anywhere and all-traffic-from-the-same-group; the config may add only
    # non-public rules on top (here: none).
    assert only_ssh_public(extra)
    # Every node type uses Ray's managed group: none brings its own (possibly wide-open) groups.
    for node_type in raw["available_node_types"].values():
        own_network = {"SecurityGroupIds", "NetworkInterfaces", "LaunchTemplate"}
        assert not own_network & set(node_type["node_config"])


def test_security_check_catches_open_ray_ports():
    """The predicate above fails on what it must reject (so the test can fail)."""
    dashboard = {"IpProtocol": "tcp", "FromPort": 8265, "ToPort": 8265, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    everything = {"IpProtocol": "-1", "FromPort": -1, "ToPort": -1, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}
    ssh = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    vpc_only = {"IpProtocol": "-1", "FromPort": -1, "ToPort": -1, "UserIdGroupPairs": [{"GroupId": "sg-1"}]}
    assert only_ssh_public([ssh, vpc_only])
    assert not only_ssh_public([ssh, dashboard])
    assert not only_ssh_public([everything])


def test_effective_inbound_rules_via_ray_provider(raw):
    """The exact rules Ray's AWS provider will authorize on a new group (needs boto3 to import)."""
    pytest.importorskip("boto3")
    from ray.autoscaler._private.aws.config import _create_default_inbound_rules

    extra = raw["provider"]["security_group"].get("IpPermissions", [])
    rules = _create_default_inbound_rules({"sg-self"}, extra)
    assert only_ssh_public(rules)
    assert [r for r in rules if r not in public_rules(rules)] == [
        {"FromPort": -1, "ToPort": -1, "IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-self"}]}
    ]


def test_token_auth_on_every_ray_start(raw):
    cmds = start_commands(raw)
    assert len(cmds) == 2  # one head, one worker
    for cmd in cmds:
        assert has_auth_mode_token(cmd), cmd
    assert not has_auth_mode_token("ray start --head; export RAY_AUTH_MODE=token")
    assert not has_auth_mode_token("export RAY_AUTH_MODE=tokens; ray start --head")
    # The same token on every node: the laptop's token file is synced to all of them.
    assert raw["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def test_dashboard_on_loopback_only(raw):
    head = [c for c in raw["head_start_ray_commands"] if "ray start" in c]
    assert len(head) == 1 and "--head" in head[0]
    assert re.search(r"--dashboard-host[= ]127\.0\.0\.1(\s|$)", head[0])
    for cmd in start_commands(raw):
        assert "0.0.0.0" not in cmd
        assert "--ray-client-server-port" not in cmd


def test_autoscaled_gpu_workers_and_cpu_head(raw):
    types = raw["available_node_types"]
    head = types[raw["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and not head["resources"].get("GPU")
    workers = {name: t for name, t in types.items() if name != raw["head_node_type"]}
    assert workers
    for name, t in workers.items():
        assert t["min_workers"] == 0, name
        assert t["resources"].get("GPU", 0) >= 1, name
        assert 0 < t["max_workers"] <= raw["max_workers"], name
        assert t["node_config"].get("IamInstanceProfile"), name  # S3 access for results
    assert raw["idle_timeout_minutes"] > 0
    assert raw["upscaling_speed"] > 0


def test_image_and_setup_match_project(raw):
    # The cluster's Ray is the Ray this project is tested with.
    assert f":{ray.__version__}-" in raw["docker"]["image"]
    assert raw["file_mounts"]["~/earlyphase"] == "."
    assert ".venv" in raw["rsync_exclude"] and ".gitignore" in raw["rsync_filter"]
    setup = "\n".join(raw["setup_commands"])
    assert "pip install -q -e ~/earlyphase" in setup
    assert "CIFAR10(os.path.expanduser('~/.cache/earlyphase/data'), download=True)" in setup
    assert "export RAY_AUTH_MODE=token" in setup  # shells on the cluster (drivers) use the token too
