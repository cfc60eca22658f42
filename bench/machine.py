"""Where the numbers come from: the machine, the software versions, and the bench's extras."""

import importlib.metadata
import importlib.util
import os
import platform
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "uvicorn", "uvloop", "httptools", "starlette", "strawberry-graphql", "graphql-core",
    "fastapi", "pydantic", "pandas", "scikit-learn", "numpy", "SQLAlchemy", "sqlmodel",
    "psycopg", "PyJWT", "orjson",
)  # fmt: skip


def ensure_extras() -> None:
    """Install the `bench` optional dependencies (FastAPI, pandas) when they are missing."""
    if all(importlib.util.find_spec(name) for name in ("fastapi", "pandas")):
        return
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wanted = pyproject["project"]["optional-dependencies"]["bench"]
    print(f"installing the bench extras: {' '.join(wanted)}", flush=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", *wanted]
    subprocess.run(command, check=True, timeout=900)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024**2
    return 0.0


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=30
    )
    return done.stdout.strip()


def source_state() -> str:
    """The commit measured, and whether the service's packages had uncommitted changes."""
    packages = ("graph", "auth", "model", "persistence", "failcast", "alembic", "pyproject.toml")
    changed = _git("status", "--porcelain", "--", *packages).splitlines()
    dirty = f" + uncommitted changes in {len(changed)} file(s)" if changed else ""
    return f"{_git('rev-parse', '--short', 'HEAD') or 'unknown'}{dirty}"


def describe(extra: dict[str, str]) -> list[str]:
    """Lines describing the machine and software, for the report's header."""
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    lines = [
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: {_cpu_model()}, {os.cpu_count()} cores, {_memory_gib():.0f} GiB, "
        f"Linux {platform.release()}; load average at start {load}",
        f"failcast: commit {source_state()}",
        f"Python {platform.python_version()} ({sys.executable})",
        "packages: " + ", ".join(f"{name} {_version(name)}" for name in PACKAGES),
    ]
    lines += [f"{name}: {value}" for name, value in extra.items()]
    blas = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    if blas:
        lines.append("environment: " + ", ".join(f"{k}={v}" for k, v in sorted(blas.items())))
    return lines
