"""The pages' third-party files (GraphiQL, React, graphql-ws), pinned in static/pages/vendor.json
and fetched from the npm registry with npm itself, so that no browser ever loads them from
anywhere but the product.

Each package's tarball must match the pinned integrity (SHA-512, the value the registry
publishes), and each file taken from it the pinned SHA-384 that its page's `integrity`
attribute repeats. Files already in place and intact are kept: a second run only hashes them.

    python scripts/page_assets.py          # fetch what is missing or altered
    python scripts/page_assets.py --check  # exit 1, naming them, when any is missing or altered
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

log = logging.getLogger("page_assets")

PAGES = Path(__file__).resolve().parent.parent / "static" / "pages"
LOCK = PAGES / "vendor.json"
VENDOR = PAGES / "vendor"


def digest(algorithm: str, data: bytes) -> str:
    """A Subresource-Integrity value: `sha384-<base64>`."""
    return f"{algorithm}-{base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def pins() -> dict[str, dict]:
    """Every pinned package: the pages' own, and those the tests alone use (axe-core)."""
    lock = json.loads(LOCK.read_text())
    return {**lock["packages"], **lock.get("testPackages", {})}


def missing(spec: str, pin: dict) -> list[str]:
    """The package's files that are absent or differ from their pin."""
    wrong = []
    for name, integrity in pin["files"].items():
        path = VENDOR / spec / name
        if not path.is_file() or digest(integrity.split("-", 1)[0], path.read_bytes()) != integrity:
            wrong.append(name)
    return wrong


def fetch(spec: str, pin: dict) -> None:
    """`npm pack` the package, check its tarball, and put its pinned files in place."""
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("npm is needed to fetch the pages' assets (Debian's package: npm).")
    env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false",
           "npm_config_audit": "false"}
    VENDOR.mkdir(parents=True, exist_ok=True)
    # Beside the files it replaces, so that each is moved in place at once.
    with tempfile.TemporaryDirectory(prefix=".fetching-", dir=VENDOR) as scratch:
        packed = subprocess.run(
            [npm, "pack", spec, "--pack-destination", scratch, "--ignore-scripts", "--json", "--silent"],
            check=True, capture_output=True, text=True, env=env, cwd=scratch,
        )
        tarball = Path(scratch) / json.loads(packed.stdout)[0]["filename"]
        data = tarball.read_bytes()
        if digest("sha512", data) != pin["integrity"]:
            sys.exit(f"{spec}: the registry's tarball does not match its pinned integrity; nothing was changed.")
        target = VENDOR / spec
        staged = Path(scratch) / "staged"
        with tarfile.open(tarball, "r:gz") as archive:
            for name, integrity in pin["files"].items():
                member = archive.extractfile(f"package/{name}")
                content = member.read() if member else b""
                if digest(integrity.split("-", 1)[0], content) != integrity:
                    sys.exit(f"{spec}: {name} does not match its pinned integrity; nothing was changed.")
                (staged / name).parent.mkdir(parents=True, exist_ok=True)
                (staged / name).write_bytes(content)
        # Every file checked before any is put in place.
        for name in pin["files"]:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged / name, target / name)


def main(argv: list[str]) -> int:
    check_only = "--check" in argv
    wrong = {spec: names for spec, pin in pins().items() if (names := missing(spec, pin))}
    if check_only:
        for spec, names in wrong.items():
            log.warning("%s: %s missing or altered", spec, ", ".join(names))
        return 1 if wrong else 0
    for spec in wrong:
        log.info("Fetching %s (npm registry)", spec)
        fetch(spec, pins()[spec])
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # to stderr, as setup's other messages
    sys.exit(main(sys.argv[1:]))
