#!/usr/bin/env python3
"""Apply infra/envs/dev for real to an offline AWS API, run imgpipe under the
roles it made, destroy it.

The AWS API is moto's server with IAM enforced (INITIAL_NO_AUTH_ACTION_COUNT:
the first three requests make the deploying user; every request after is
signed and checked against IAM policies). Terraform applies the dev env with
every provider endpoint pointed at it. Then, with --imgpipe, each mode runs
with the command and environment of its ECS task definition as applied,
under credentials of its own task role (sts:AssumeRole), against the lake
bucket Terraform made: an upload over HTTP and an image from Kafka are
accepted and processed, one is erased, the sweeper purges the rest a period
later and the audit passes. Any refusal fails the run. Last, terraform
destroy, which must succeed too.

What moto does not implement is switched off by variables (Redshift
Serverless, QuickSight, Lake Formation data-cells filters and tag-based
grants, MSK: an existing broker stands in) and stays covered by the mock
provider tests. moto's IAM evaluation is basic: it judges Action and
Resource, treats a Condition it cannot evaluate as a deny, and authorises
a multi-object delete on the bucket, not per key; see README "Offline
apply" in infra/README.md for what that leaves to the request-recording
test (tests/e2e/access.rs).

    python3 tests/infra/offline_apply.py [--imgpipe target/debug/imgpipe]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
ENV_DIR = ROOT / "infra" / "envs" / "dev"
REGION = "us-east-1"
# Every service the dev env's resources and data sources talk to.
SERVICES = [
    "acm", "appautoscaling", "athena", "autoscaling", "cloudwatch", "ec2", "ecr", "ecs",
    "elbv2", "events", "glue", "iam", "kafka", "kms", "lakeformation", "logs", "quicksight",
    "redshiftdata", "redshiftserverless", "s3", "scheduler", "secretsmanager", "sns", "ssm",
    "sts", "wafv2",
]
API_KEY = "offline-apply-key"


def log(msg: str) -> None:
    print(f"[offline-apply] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, seconds: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited ({proc.returncode}) before {url} answered")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {seconds} s")


class Moto:
    """moto's server with IAM enforced after the deploying user is made."""

    def __init__(self, venv_bin: Path, workdir: Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3")
        self.log = open(workdir / "moto.log", "w")
        self.proc = subprocess.Popen(
            [str(venv_bin / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_http(self.endpoint + "/moto-api/", 60, self.proc)

    def client(self, service: str, creds: dict[str, str]):
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds.get("SessionToken"),
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
        )

    def deployer(self) -> tuple[dict[str, str], str]:
        """The three unauthenticated requests: a user with every right."""
        anon = {"AccessKeyId": "bootstrap", "SecretAccessKey": "bootstrap"}
        iam = self.client("iam", anon)
        user = iam.create_user(UserName="terraform-deploy")["User"]
        iam.put_user_policy(
            UserName="terraform-deploy", PolicyName="deploy",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
        )
        key = iam.create_access_key(UserName="terraform-deploy")["AccessKey"]
        return {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}, user["Arn"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class Terraform:
    def __init__(self, workdir: Path, moto: Moto, creds: dict[str, str], plugin_dir: str):
        # A copy of the env (symlinks resolved, modules by absolute path) with
        # an override file that points the provider at moto: infra/ itself
        # is applied unchanged.
        self.dir = workdir / "env"
        shutil.copytree(ENV_DIR, self.dir, symlinks=False,
                        ignore=shutil.ignore_patterns(".terraform", "tests", "*.tfstate*"))
        main = self.dir / "main.tf"
        main.write_text(main.read_text().replace('"../../modules/', f'"{ROOT}/infra/modules/'))
        endpoints = "\n".join(f'    {s} = "{moto.endpoint}"' for s in SERVICES)
        (self.dir / "moto_override.tf").write_text(
            'provider "aws" {\n'
            "  s3_use_path_style = true\n"
            "  skip_metadata_api_check = true\n"
            f"  endpoints {{\n{endpoints}\n  }}\n"
            "}\n"
        )
        self.env = dict(
            os.environ, AWS_ACCESS_KEY_ID=creds["AccessKeyId"],
            AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"], AWS_REGION=REGION,
            CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1", TF_INPUT="0",
            # Ephemeral (never in state); what MSK would get on a first apply.
            TF_VAR_kafka_scram_password="offline-apply-password",
        )
        self.env.pop("AWS_SESSION_TOKEN", None)
        self.env.pop("AWS_PROFILE", None)
        self.run("init", "-backend=false", f"-plugin-dir={plugin_dir}", quiet=True)

    def run(self, *args: str, quiet: bool = False) -> str:
        cmd = ["terraform", f"-chdir={self.dir}", *args, "-no-color"]
        # A resource moto never finishes would otherwise wait for its
        # provider timeout (up to an hour).
        out = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            sys.stderr.write(out.stdout[-20000:] + out.stderr[-20000:])
            raise SystemExit(f"terraform {args[0]} failed ({out.returncode})")
        if not quiet:
            for line in out.stdout.splitlines():
                if line.startswith(("Apply complete", "Destroy complete")):
                    log(line)
        return out.stdout


def adapt_roles_to_moto(iam, defs: dict[str, dict], deployer_arn: str, bucket: str) -> None:
    """What each role gets besides what Terraform applied, and why.

    - Its trust policy lets the test's user assume it, as ECS would
      (moto cannot evaluate the applied one for a user: it names a service
      principal with an aws:SourceAccount condition).
    - s3:DeleteObject on the bucket ARN itself: on AWS that grants nothing
      (object actions are judged against object ARNs, per key), but moto
      judges a multi-object delete against the bucket ARN only, then each
      key against the bucket policy. Which keys a mode may purge is proven
      by tests/e2e/access.rs instead.
    Every other permission is exactly as applied.
    """
    for d in defs.values():
        role = d["role"].rsplit("/", 1)[-1]
        iam.update_assume_role_policy(
            RoleName=role,
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": deployer_arn}, "Action": "sts:AssumeRole"}]}),
        )
        iam.put_role_policy(
            RoleName=role, PolicyName="moto-multi-object-delete",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "s3:DeleteObject", "Resource": f"arn:aws:s3:::{bucket}"}]}),
        )


def task_definitions(ecs, families: dict[str, str]) -> dict[str, dict]:
    defs = {}
    for mode, family in families.items():
        td = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
        (container,) = td["containerDefinitions"]
        defs[mode] = {
            "command": container["command"],
            "env": {e["name"]: e["value"] for e in container.get("environment", [])},
            "secrets": {s["name"]: s["valueFrom"] for s in container.get("secrets", [])},
            "role": td["taskRoleArn"],
        }
    return defs


class Pipeline:
    """imgpipe's modes as ECS would run them, here, under their task roles."""

    def __init__(self, binary: Path, moto: Moto, deployer: dict[str, str], defs: dict[str, dict],
                 workdir: Path, kafka: str):
        self.binary, self.moto, self.deployer, self.defs, self.workdir = binary, moto, deployer, defs, workdir
        self.kafka = kafka
        self.procs: list[subprocess.Popen] = []
        self.suffix = str(int(time.time()))
        ssm = moto.client("ssm", deployer)
        self.secret_values: dict[str, str] = {}
        for d in defs.values():
            for name, source in d["secrets"].items():
                if name == "IMGPIPE_CONFIG_TOML":
                    self.secret_values[source] = ssm.get_parameter(Name=source, WithDecryption=True)["Parameter"]["Value"]

    def env(self, mode: str) -> dict[str, str]:
        d = self.defs[mode]
        sts = self.moto.client("sts", self.deployer)
        creds = sts.assume_role(RoleArn=d["role"], RoleSessionName=f"offline-{mode}")["Credentials"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMGPIPE_"))}
        env.update(d["env"])
        for name, source in d["secrets"].items():
            if source in self.secret_values:
                env[name] = self.secret_values[source]
        env.update(
            AWS_ACCESS_KEY_ID=creds["AccessKeyId"], AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
            AWS_SESSION_TOKEN=creds["SessionToken"], AWS_REGION=REGION,
            # Where this differs from ECS: the endpoint (moto, path-style),
            # the broker (a local plaintext one stands in for MSK), topics
            # and groups of this run, local listeners, text logs.
            IMGPIPE_LAKE__S3__ENDPOINT=self.moto.endpoint,
            IMGPIPE_LAKE__S3__FORCE_PATH_STYLE="true",
            IMGPIPE_KAFKA_BROKERS=self.kafka,
            IMGPIPE_KAFKA__SECURITY_PROTOCOL="plaintext",
            IMGPIPE_LOG_FORMAT="text",
            # moto cannot verify the signature of a streamed PUT with a
            # trailing checksum (aws-chunked, the SDK's default): checksums
            # only where S3 requires them.
            AWS_REQUEST_CHECKSUM_CALCULATION="when_required",
        )
        for k in ("IMGPIPE_KAFKA__SASL_MECHANISM", "IMGPIPE_KAFKA__SASL_USERNAME", "IMGPIPE_KAFKA__SASL_PASSWORD"):
            env.pop(k, None)
        for k in ("IMGPIPE_KAFKA_TOPIC", "IMGPIPE_KAFKA_DLQ_TOPIC", "IMGPIPE_KAFKA_EVENTS_TOPIC",
                  "IMGPIPE_KAFKA_GROUP", "IMGPIPE_KAFKA__PROCESS_GROUP"):
            if k in env:
                env[k] = f"{env[k]}-{self.suffix}"
        if "IMGPIPE_TELEMETRY__LISTEN" in env:
            env["IMGPIPE_TELEMETRY__LISTEN"] = "127.0.0.1:0"
        return env

    def command(self, mode: str) -> list[str]:
        cmd = list(self.defs[mode]["command"])
        if "--listen" in cmd:
            self.api_port = free_port()
            cmd[cmd.index("--listen") + 1] = f"127.0.0.1:{self.api_port}"
        return [str(self.binary), *cmd]

    def start(self, mode: str) -> subprocess.Popen:
        out = open(self.workdir / f"{mode}.log", "w")
        proc = subprocess.Popen(self.command(mode), env=self.env(mode), stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def once(self, mode: str, *extra: str) -> subprocess.CompletedProcess:
        cmd = self.command(mode)
        return subprocess.run([*cmd, *extra], env=self.env(mode), capture_output=True, text=True, timeout=300)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()

    def dump_logs(self) -> None:
        for f in sorted(self.workdir.glob("*.log")):
            if f.name == "moto.log":
                continue
            sys.stderr.write(f"--- {f.name} (last 40 lines)\n")
            sys.stderr.write("\n".join(f.read_text(errors="replace").splitlines()[-40:]) + "\n")


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_status(base: str, image: str, want: set[str], seconds: float, pipeline: Pipeline) -> dict:
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        for p in pipeline.procs:
            if p.poll() is not None:
                raise SystemExit(f"{p.args[1]} exited ({p.returncode}) while {image} was in flight")
        code, last = http("GET", f"{base}/v1/images/{image}", headers={"Authorization": f"Bearer {API_KEY}"})
        if code == 200 and last.get("status") in want:
            return last
        time.sleep(0.5)
    raise SystemExit(f"image {image} not {want} within {seconds} s: {last}")


def produce(kafka: str, topic: str, data: bytes) -> None:
    from confluent_kafka import Producer  # the venv's, as scripts/produce.py uses

    p = Producer({"bootstrap.servers": kafka, "message.timeout.ms": 30000})
    p.produce(topic, key=b"offline-apply", value=data)
    if p.flush(30) != 0:
        raise SystemExit("the Kafka image was not delivered")


def create_image_topic(kafka: str, topic: str) -> None:
    """The image topic, as infra/README.md's first run creates it: nothing
    kept past the period (retention + one segment), broker time stamps."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka})
    hour = 3600 * 1000
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config={
        "retention.ms": str(7 * 24 * hour - hour - 5 * 60 * 1000),
        "segment.ms": str(hour),
        "message.timestamp.type": "LogAppendTime",
    })], request_timeout=30)
    for f in futures.values():
        f.result(timeout=30)


def run_pipeline(pipeline: Pipeline, image: bytes) -> None:
    create_image_topic(pipeline.kafka, pipeline.env("bridge")["IMGPIPE_KAFKA_TOPIC"])
    api = pipeline.start("api")
    base = f"http://127.0.0.1:{pipeline.api_port}"
    wait_http(base + "/healthz", 60, api)
    pipeline.start("processor")
    pipeline.start("bridge")
    auth = {"Authorization": f"Bearer {API_KEY}"}

    code, body = http("POST", f"{base}/v1/images", image, {**auth, "Content-Type": "image/jpeg"})
    if code != 202:
        raise SystemExit(f"upload refused: {code} {body}")
    uploaded = body["id"]
    log(f"uploaded {uploaded} as the api role")
    wait_status(base, uploaded, {"processed"}, 120, pipeline)
    log(f"{uploaded} processed by the processor role")

    topic = pipeline.env("bridge")["IMGPIPE_KAFKA_TOPIC"]
    produce(pipeline.kafka, topic, image)
    deadline = time.monotonic() + 120
    streamed = None
    while streamed is None and time.monotonic() < deadline:
        code, page = http("GET", f"{base}/v1/images?limit=10", headers=auth)
        if code == 200:
            streamed = next((i for i in page["images"] if i["source"] == "kafka"), None)
        time.sleep(0.5)
    if streamed is None:
        raise SystemExit("the Kafka image never reached the lake (bridge role)")
    wait_status(base, streamed["id"], {"processed"}, 120, pipeline)
    log(f"{streamed['id']} admitted by the bridge role and processed")

    code, body = http("DELETE", f"{base}/v1/images/{uploaded}", headers=auth)
    if code not in (200, 202, 204):
        raise SystemExit(f"erasure refused: {code} {body}")
    code, _ = http("GET", f"{base}/v1/images/{uploaded}", headers=auth)
    if code not in (404, 410):
        raise SystemExit(f"erased image still answers {code}")
    log(f"{uploaded} erased by the api role")
    pipeline.stop()
    pipeline.procs.clear()

    later = (datetime.now(timezone.utc) + timedelta(days=8)).isoformat()
    swept = pipeline.once("sweeper", "--once", "--now", later)
    if swept.returncode != 0:
        sys.stderr.write(swept.stdout + swept.stderr)
        raise SystemExit("the sweeper role could not sweep")
    s3 = pipeline.moto.client("s3", pipeline.deployer)
    bucket = pipeline.env("sweeper")["IMGPIPE_LAKE__S3__BUCKET"]
    left = [
        v["Key"]
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
        for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
    ]
    if left:
        raise SystemExit(f"the sweep a period later left {len(left)} versions: {left[:10]}")
    log("swept a period later by the sweeper role: no version of any image left")
    audit = pipeline.once("audit", "--now", later)
    if audit.returncode != 0:
        sys.stderr.write(audit.stdout + audit.stderr)
        raise SystemExit("the audit (audit role) failed")
    log("audit passed under the audit role")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--imgpipe", type=Path, help="run the pipeline under the applied roles with this binary")
    ap.add_argument("--kafka", default=os.environ.get("IMGPIPE_TEST_KAFKA", "127.0.0.1:9092"))
    ap.add_argument("--plugin-dir", default=os.environ.get("TF_PLUGIN_DIR", "/opt/tf-plugins"))
    ap.add_argument("--image", type=Path, default=ROOT.parent / "shared" / "corpus")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    venv_bin = Path(os.environ.get("MOTO_VENV_BIN", Path(sys.executable).parent))
    workdir = Path(tempfile.mkdtemp(prefix="imgpipe-offline-apply."))
    moto = Moto(venv_bin, workdir)
    ok = False
    try:
        deployer, deployer_arn = moto.deployer()
        cert = moto.client("acm", deployer).request_certificate(DomainName="api.imgpipe.test")["CertificateArn"]
        tf = Terraform(workdir, moto, deployer, args.plugin_dir)
        (tf.dir / "offline.auto.tfvars.json").write_text(json.dumps({
            "enable_redshift": False,
            "enable_quicksight": False,
            "enable_analyst_grants": False,
            "enable_autoscaling": False,
            "enable_audit_schedule": False,
            "lake_policy_denies": False,
            "existing_brokers": args.kafka,
            "existing_sasl_secret_arn": f"arn:aws:secretsmanager:{REGION}:123456789012:secret:offline-kafka-AbCdEf",
            "existing_sasl_username": "imgpipe",
            "certificate_arn": cert,
            "api_keys": [{
                "sha256": hashlib.sha256(API_KEY.encode()).hexdigest(), "principal": "analyst",
                "permissions": ["images:write", "images:read", "images:erase"],
            }],
        }))
        log(f"terraform apply → moto at {moto.endpoint} (IAM enforced)")
        tf.run("apply", "-auto-approve", "-parallelism=20")
        try:
            if args.imgpipe:
                outputs = json.loads(tf.run("output", "-json", quiet=True))
                defs = task_definitions(moto.client("ecs", deployer), outputs["task_definition_families"]["value"])
                adapt_roles_to_moto(moto.client("iam", deployer), defs, deployer_arn, outputs["lake_bucket"]["value"])
                image = first_jpeg(args.image)
                pipeline = Pipeline(args.imgpipe.resolve(), moto, deployer, defs, workdir, args.kafka)
                try:
                    run_pipeline(pipeline, image)
                except BaseException:
                    pipeline.stop()
                    pipeline.dump_logs()
                    raise
        finally:
            log("terraform destroy")
            tf.run("destroy", "-auto-approve", "-parallelism=20")
        ok = True
    finally:
        moto.stop()
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"work directory kept: {workdir}")


def first_jpeg(path: Path) -> bytes:
    if path.is_file():
        return path.read_bytes()
    for f in sorted(path.rglob("*")):
        if f.suffix.lower() in (".jpg", ".jpeg") and f.stat().st_size < 8 << 20:
            return f.read_bytes()
    raise SystemExit(f"no JPEG under {path}")


if __name__ == "__main__":
    main()
