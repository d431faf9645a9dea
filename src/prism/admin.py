"""Run identifiers, under the import path Prism 0.2.x project files use."""

from __future__ import annotations

import secrets
import uuid

__all__ = ["generate_run_id", "generate_run_slug"]

_ADJECTIVES = (
    "amber azure bold brisk calm clever cosmic crisp daring eager fancy gentle "
    "golden happy humble jolly keen lively lucky mellow merry nimble noble plucky "
    "proud quick quiet rapid rustic shiny silent sleek smart snowy solar spry "
    "steady sunny swift tidy vivid warm wise witty zesty"
).split()
_NOUNS = (
    "badger beaver bison condor coyote crane falcon ferret finch gecko heron "
    "ibis jaguar koala lemur lynx marmot marten moose newt ocelot osprey otter "
    "owl panda pelican puffin quail raven robin salmon seal sparrow stork swan "
    "tapir tiger toucan walrus wombat yak zebra"
).split()
_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def generate_run_id() -> str:
    """Return a random run id: 32 hexadecimal characters."""
    return uuid.uuid4().hex


def generate_run_slug() -> str:
    """Return a readable run name such as `swift-otter-Kq3xN8pTbZ`."""
    words = f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}"
    suffix = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    return f"{words}-{suffix}"
