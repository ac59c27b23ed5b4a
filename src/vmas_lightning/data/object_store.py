"""Datasets in S3 or an S3-compatible store (`data.root: s3://bucket/prefix`).

litdata streams them with boto3 (index files) and obstore (chunks), both set up from boto3's own
configuration: credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE` or
`~/.aws`, and the endpoint of an S3-compatible server from `AWS_ENDPOINT_URL` (or
`AWS_ENDPOINT_URL_S3`, or `endpoint_url` in `~/.aws/config`), which must be https (obstore refuses
plain http; a private CA goes to `AWS_CA_BUNDLE` for boto3 and `SSL_CERT_FILE` for obstore). litdata's client retries a failed
request up to 1000 times, so a wrong bucket, missing credentials or an unreachable endpoint would
look like a hang: `check_dataset` asks the store once, with the same configuration and few retries,
before any loader starts, and says what is wrong in one line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional
from urllib.parse import urlparse

from vmas_lightning.errors import VMASError

INDEX = "index.json"


def _client():
    import boto3
    from botocore.config import Config

    return boto3.Session().client("s3", config=Config(connect_timeout=5, read_timeout=30,
                                                      retries={"max_attempts": 2, "mode": "standard"}))


def _bucket_and_prefix(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    if not parsed.netloc:
        raise VMASError(f"{url}: no bucket; write s3://bucket/prefix")
    return parsed.netloc, parsed.path.strip("/")


def _ask(url: str, client, request, not_found: str):
    """`request()`'s answer from the store; one-line `VMASError` for what the user has to fix (`not_found`
    for a 404)."""
    from botocore.exceptions import (
        ClientError, ConnectTimeoutError, EndpointConnectionError, NoCredentialsError, PartialCredentialsError,
        ReadTimeoutError,
    )

    endpoint = client.meta.endpoint_url
    bucket, _ = _bucket_and_prefix(url)
    try:
        return request()
    except (NoCredentialsError, PartialCredentialsError):
        raise VMASError(f"{url}: no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)") from None
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as err:
        raise VMASError(f"{url}: cannot reach the S3 endpoint {endpoint} ({err}); "
                        "set AWS_ENDPOINT_URL to the store's address") from None
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NoSuchKey"):
            raise VMASError(not_found) from None
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise VMASError(f"{url}: access to bucket '{bucket}' at {endpoint} denied ({code}); check the credentials") from None
        raise VMASError(f"{url}: {endpoint} answered {code}: {' '.join(str(err).split())}") from None


def _check_bucket(url: str, client) -> None:
    bucket, _ = _bucket_and_prefix(url)
    _ask(url, client, lambda: client.head_bucket(Bucket=bucket),
         f"{url}: bucket '{bucket}' does not exist at {client.meta.endpoint_url}")


def read_text(url: str) -> Optional[str]:
    """The object at `url` (s3://bucket/key) as UTF-8 text; None when there is no such key."""
    client = _client()
    bucket, key = _bucket_and_prefix(url)

    def request() -> Optional[str]:
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        except client.exceptions.NoSuchKey:
            return None

    return _ask(url, client, request, f"{url}: bucket '{bucket}' does not exist at {client.meta.endpoint_url}")


def check_dataset(url: str, splits: Iterable[str]) -> None:
    """Fail in one line unless `url` (s3://bucket/prefix) is reachable with the configured credentials
    and holds `<split>/index.json` for every split. Other schemes are left to litdata."""
    if urlparse(url).scheme != "s3":
        return
    client = _client()
    bucket, prefix = _bucket_and_prefix(url)
    if urlparse(client.meta.endpoint_url).scheme == "http":
        raise VMASError(f"{url}: the S3 endpoint {client.meta.endpoint_url} is plain http, which litdata's chunk reader "
                        "(obstore) refuses; serve the store over https (a private CA: AWS_CA_BUNDLE and SSL_CERT_FILE)")
    _check_bucket(url, client)
    for split in splits:
        key = f"{prefix}/{split}/{INDEX}".lstrip("/")
        _ask(url, client, lambda: client.head_object(Bucket=bucket, Key=key),
             f"{url} has no '{split}' split: s3://{bucket}/{key} not found")


def upload_dataset(folder: str | Path, url: str) -> dict[str, int]:
    """Copy the splits of a dataset folder (`<split>/index.json`, its chunks and `annotation.json`, as
    `vmas prepare` and `vmas demo-data` write them) to `url` (s3://bucket/prefix); each split's index
    last, so a split whose upload was cut off has no index and is not read. Returns the files per split."""
    from vmas_lightning.data.shards import ANNOTATION_NAME, SPLITS

    folder = Path(folder)
    splits = [s for s in SPLITS if (folder / s / INDEX).is_file()]
    if not splits:
        raise VMASError(f"{folder}: no split to upload (no {', '.join(s + '/' for s in SPLITS)} folder with an {INDEX})")
    if urlparse(url).scheme != "s3":
        raise VMASError(f"--to {url}: not an s3://bucket/prefix URL")
    client = _client()
    bucket, prefix = _bucket_and_prefix(url)
    _check_bucket(url, client)
    counts = {}
    for split in splits:
        annotation = [folder / split / ANNOTATION_NAME] if (folder / split / ANNOTATION_NAME).is_file() else []
        files = sorted((folder / split).glob("chunk-*.bin")) + annotation + [folder / split / INDEX]
        for path in files:
            key = f"{prefix}/{split}/{path.name}".lstrip("/")
            _ask(url, client, lambda: client.upload_file(str(path), bucket, key), f"{url}: bucket '{bucket}' vanished")
        counts[split] = len(files)
    return counts
