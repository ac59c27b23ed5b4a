"""`data.root: s3://bucket/prefix` against a real S3-compatible server: moto's server mode, a separate
process on a free loopback port that speaks the S3 API over HTTPS (with a test CA). The demo shards go there with
`vmas prepare upload`; `vmas fit` streams them, is killed mid-epoch and resumes with the clips of an
uninterrupted run, and ends where training on the local folder ends. A wrong bucket, a missing split,
missing credentials, an unreachable endpoint and a plain-http one are one line each."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from helpers import TINY_CONFIG, one_line_error
from test_resume import demo_data, fit, read_steps, write_run_config
from vmas_lightning.checkpointing import latest_checkpoint
from vmas_lightning.cli.main import main

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server", reason="moto[server] (the dev extra) runs the local S3 server")
BUCKET = "vmas-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tls_files(folder) -> tuple[str, str, str]:
    """A test CA and a certificate it signs for 127.0.0.1 -> paths of the CA, the certificate and its key."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject: str, public_key, signer, ca: bool):
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vmas test CA")]))
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                            critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    files = {"ca.pem": certificate("vmas test CA", ca_key.public_key(), ca_key, True).public_bytes(serialization.Encoding.PEM),
             "cert.pem": certificate("127.0.0.1", key.public_key(), ca_key, False).public_bytes(serialization.Encoding.PEM),
             "key.pem": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return tuple(str(folder / name) for name in files)


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """(URL, CA file) of a moto S3 server over TLS (litdata's chunk reader, obstore, refuses plain
    http) with a certificate of a test CA, running for this module's tests."""
    ca, cert, key = _tls_files(tmp_path_factory.mktemp("tls"))
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port), "-s", "-c", cert,
                               "-k", key], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"moto server did not start on port {port} (exit code {server.poll()})")
            time.sleep(0.2)
    yield f"https://127.0.0.1:{port}", ca
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture
def s3(s3_endpoint, monkeypatch, tmp_path):
    """This process and the `vmas` subprocesses it starts talk to the server: endpoint and (any)
    credentials in the environment as boto3 reads them, the test CA trusted by boto3 (AWS_CA_BUNDLE)
    and obstore (SSL_CERT_FILE), no ~/.aws, and litdata's chunk cache in tmp_path, empty. Returns a
    boto3 client."""
    endpoint, ca = s3_endpoint
    for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_CA_BUNDLE": ca, "SSL_CERT_FILE": ca, "AWS_EC2_METADATA_DISABLED": "true",
                        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
                        "LITDATA_CACHE_DIR": str(tmp_path / "litdata-cache")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client("s3")
    if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=BUCKET)
    return client


def _upload(url: str, capsys) -> dict:
    import json

    assert main(["prepare", "upload", "--output", str(demo_data()), "--to", url]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_fit_streams_from_s3_and_resumes_mid_epoch(s3, tmp_path, capsys):
    url = f"s3://{BUCKET}/demo"
    files = _upload(url, capsys)["files"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="demo/")["Contents"]}
    assert {f"demo/{split}/index.json" for split in ("train", "val", "test")} <= keys
    assert len(keys) == sum(files.values())

    steps, kill_at = 6, 3  # 4 steps an epoch: killed inside the first
    runs = {name: tmp_path / name for name in ("local", "straight", "killed")}

    def config(name: str, *probes: dict):
        recorder = {"class_path": "test_resume.StepRecorder", "init_args": {"folder": str(runs[name])}}
        return write_run_config(tmp_path / f"{name}-{len(probes)}.json", steps, [recorder, *probes])

    fit(runs["local"], config("local"))
    fit(runs["straight"], config("straight"), "--data.root", url)
    kill = {"class_path": "test_resume.KillAtStep", "init_args": {"step": kill_at}}
    fit(runs["killed"], config("killed", kill), "--data.root", url, expect_rc=-signal.SIGKILL)
    resume_from = latest_checkpoint(runs["killed"])
    assert torch.load(resume_from, weights_only=False)["global_step"] == kill_at
    fit(runs["killed"], config("killed"), "--data.root", url, "--ckpt_path", str(resume_from))

    records = {name: read_steps(folder) for name, folder in runs.items()}
    assert [r["step"] for r in records["killed"]] == list(range(1, steps + 1))  # resumed at kill_at + 1
    assert [r["ids"] for r in records["killed"]] == [r["ids"] for r in records["straight"]] == [r["ids"] for r in records["local"]]
    final = {name: torch.load(folder / "checkpoints" / "last.ckpt", weights_only=False) for name, folder in runs.items()}
    for name, value in final["local"]["state_dict"].items():
        for run in ("straight", "killed"):
            torch.testing.assert_close(final[run]["state_dict"][name], value, rtol=0, atol=1e-6, msg=f"{run}: {name}")


def test_annotation_settings_travel_to_the_bucket_and_are_checked_there(s3, tmp_path, capsys):
    url = f"s3://{BUCKET}/annotated"
    _upload(url, capsys)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="annotated/")["Contents"]}
    assert {f"annotated/{split}/annotation.json" for split in ("train", "val", "test")} <= keys
    assert main(["fit", "--config", str(TINY_CONFIG), "--data.root", url, "--trainer.max_steps", "1",
                 "--trainer.default_root_dir", str(tmp_path), "--data.beats.peak_window", "31"]) == 2
    assert (f"{url}/train: made with other settings than the config's (data.beats.peak_window 25 in the shards, "
            "31 in the config)") in one_line_error(capsys)


@pytest.mark.parametrize("problem", ["wrong bucket", "missing split", "missing credentials", "unreachable endpoint",
                                     "plain http endpoint"])
def test_object_store_problems_are_one_line(problem, s3, monkeypatch, capsys, tmp_path):
    url = f"s3://{BUCKET}/nothing-here"
    expected = f"{url} has no 'train' split: s3://{BUCKET}/nothing-here/train/index.json not found"
    if problem == "wrong bucket":
        url = "s3://no-such-bucket/demo"
        expected = f"{url}: bucket 'no-such-bucket' does not exist at {s3.meta.endpoint_url}"
    elif problem == "missing credentials":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        expected = f"{url}: no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
    elif problem == "unreachable endpoint":
        closed = f"https://127.0.0.1:{_free_port()}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
        expected = f"{url}: cannot reach the S3 endpoint {closed}"
    elif problem == "plain http endpoint":
        plain = s3.meta.endpoint_url.replace("https://", "http://")
        monkeypatch.setenv("AWS_ENDPOINT_URL", plain)
        expected = f"{url}: the S3 endpoint {plain} is plain http"
    assert main(["fit", "--config", str(TINY_CONFIG), "--data.root", url, "--trainer.max_steps", "1",
                 "--trainer.default_root_dir", str(tmp_path)]) == 2
    assert one_line_error(capsys).removeprefix("vmas: error: ").startswith(expected)
    if problem not in ("missing split", "plain http endpoint"):  # the upload asks the store the same way
        assert main(["prepare", "upload", "--output", str(demo_data()), "--to", url]) == 2
        assert one_line_error(capsys).removeprefix("vmas: error: ").startswith(expected.split(" has no")[0])


def test_upload_options_are_checked(tmp_path, capsys):
    assert main(["prepare", "upload", "--output", str(tmp_path)]) == 2
    assert "needs --to s3://bucket/prefix" in one_line_error(capsys)
    assert main(["prepare", "upload", "--output", str(tmp_path), "--to", f"s3://{BUCKET}/x"]) == 2
    assert "no split to upload" in one_line_error(capsys)
    assert main(["prepare", "merge", "--output", str(tmp_path), "--to", f"s3://{BUCKET}/x"]) == 2
    assert "--to is read by 'vmas prepare upload' only" in one_line_error(capsys)
