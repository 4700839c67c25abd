# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The S3 bucket deploy artifacts go to, and uploads named by content so repeats cost nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from .cli import DeployError

HASH_CHARS = 16


def default_bucket(region: str, account_id: str) -> str:
    """SageMaker's own default bucket name, so teams that already use it find artifacts there."""
    return f"sagemaker-{region}-{account_id}"


def content_hash(path: Path) -> str:
    """A short SHA-256 of a file, used in its key so a changed file never overwrites an old one."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:HASH_CHARS]


def ensure_bucket(s3: Any, bucket: str, region: str, say: Callable[[str], None]) -> None:
    """Create the bucket if it does not exist: private, encrypted, TLS only."""
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code in ("403", "AccessDenied", "Forbidden"):
            raise DeployError(
                f"bucket {bucket} exists but these credentials cannot use it (another account owns it, "
                "or the role lacks s3:ListBucket); set artifacts.bucket in deploy/config.json"
            ) from None
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
    say(f"Creating bucket s3://{bucket} (private, encrypted, TLS only)")
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=bucket, **location)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(_tls_only_policy(bucket)))


def upload(s3: Any, path: Path, bucket: str, key: str, say: Callable[[str], None]) -> str:
    """Upload a file unless the same key is already there; return its s3:// URI."""
    uri = f"s3://{bucket}/{key}"
    try:
        s3.head_object(Bucket=bucket, Key=key)
        say(f"Already uploaded: {uri}")
        return uri
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
    say(f"Uploading {path.name} ({path.stat().st_size / 1e6:.1f} MB) to {uri}")
    s3.upload_file(str(path), bucket, key, ExtraArgs={"ServerSideEncryption": "AES256"})
    return uri


def delete_prefix(s3: Any, bucket: str, prefix: str) -> int:
    """Delete every object under prefix/ (what this project uploaded there); return how many."""
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
        objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if objects:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
            deleted += len(objects)
    return deleted


def _tls_only_policy(bucket: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
