"""An agent's staging area in S3: scripts, bundles, wheelhouses and run outputs.

Everything one agent stores sits under one prefix, `<project>/<agent>/` of the
location the agent file names (`staging_uri`) or of a bucket Prism creates for
the account and region, `prism-staging-<account>-<region>`. `delete_all`
removes that prefix and nothing else, since other agents may share the bucket.
Content-addressed names (a bundle's hash, a wheelhouse's key) let an upload be
skipped when the object is already there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prism.agents.aws import MANAGED_BY, Aws
from prism.errors import ConfigError

__all__ = ["S3Location", "StagingStore", "default_bucket", "get_object"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix that ends with '/' (or is empty)."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        """Read `s3://bucket/prefix`; the prefix gets a trailing '/'."""
        if not uri.startswith("s3://"):
            raise ConfigError(f"{uri!r} is not an S3 location (s3://bucket/prefix)")
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        prefix = prefix.strip("/")
        return cls(bucket, f"{prefix}/" if prefix else "")

    def child(self, name: str) -> S3Location:
        return S3Location(self.bucket, f"{self.prefix}{name.strip('/')}/")

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def uri(self, name: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{name}"


def default_bucket(aws: Aws) -> str:
    """Return the name of the staging bucket Prism uses when none is configured."""
    account = aws.call("sts", "get_caller_identity")["Account"]
    return f"prism-staging-{account}-{aws.region}"


class StagingStore:
    """The objects of one agent under `location`."""

    def __init__(self, aws: Aws, location: S3Location) -> None:
        self.aws = aws
        self.location = location

    def uri(self, name: str = "") -> str:
        return self.location.uri(name)

    def ensure_bucket(self) -> None:
        """Create the bucket, with public access blocked, if it does not exist.

        The bucket is shared by the project's agents, so it carries only the
        `prism:managed-by` tag, and `delete` leaves it in place.
        """
        bucket = self.location.bucket
        if self._call_or_none("head_bucket", Bucket=bucket) is not None:
            return
        arguments: dict[str, Any] = {"Bucket": bucket}
        if self.aws.region != "us-east-1":
            arguments["CreateBucketConfiguration"] = {
                "LocationConstraint": self.aws.region
            }
        logger.info("Creating the staging bucket s3://%s", bucket)
        self.aws.call("s3", "create_bucket", **arguments)
        self.aws.call(
            "s3",
            "put_public_access_block",
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        self.aws.call(
            "s3",
            "put_bucket_tagging",
            Bucket=bucket,
            Tagging={"TagSet": [{"Key": "prism:managed-by", "Value": MANAGED_BY}]},
        )

    def exists(self, name: str) -> bool:
        response = self._call_or_none(
            "head_object", Bucket=self.location.bucket, Key=self.location.key(name)
        )
        return response is not None

    def put_bytes(self, name: str, data: bytes) -> None:
        self.aws.call(
            "s3",
            "put_object",
            Bucket=self.location.bucket,
            Key=self.location.key(name),
            Body=data,
            ServerSideEncryption="AES256",
        )

    def put_file(self, name: str, path: Path) -> None:
        with path.open("rb") as stream:
            self.aws.call(
                "s3",
                "put_object",
                Bucket=self.location.bucket,
                Key=self.location.key(name),
                Body=stream,
                ServerSideEncryption="AES256",
            )

    def get_bytes(self, name: str) -> bytes | None:
        """Return the object's content, or None if it does not exist."""
        return get_object(self.aws, self.location.bucket, self.location.key(name))

    def delete_all(self) -> int:
        """Delete every object under the prefix; return how many."""
        if not self.location.prefix:
            raise ConfigError(
                f"Refusing to empty the whole bucket {self.location.bucket}",
                hint="Give staging_uri a prefix, such as s3://bucket/prism/.",
            )
        deleted = 0
        while True:
            response = self._call_or_none(
                "list_objects_v2",
                Bucket=self.location.bucket,
                Prefix=self.location.prefix,
            )
            contents = (response or {}).get("Contents", [])
            if not contents:
                return deleted
            self.aws.call(
                "s3",
                "delete_objects",
                Bucket=self.location.bucket,
                Delete={"Objects": [{"Key": item["Key"]} for item in contents]},
            )
            deleted += len(contents)

    def _call_or_none(self, operation: str, **arguments: Any) -> Any:
        return self.aws.call_or_none("s3", operation, **arguments)


def get_object(aws: Aws, bucket: str, key: str) -> bytes | None:
    """Return an object's content, or None if it (or its bucket) does not exist."""
    response = aws.call_or_none("s3", "get_object", Bucket=bucket, Key=key)
    if response is None:
        return None
    return bytes(response["Body"].read())
