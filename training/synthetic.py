"""A synthetic fleet shaped like the public device-failure data (see shared/data/SOURCE.md).

Nothing here is derived from real rows: only the published summary shapes are imitated, so
that training, tests and demos run without the real file.
"""

import json
from dataclasses import asdict, dataclass
from datetime import date

import numpy as np
import numpy.typing as npt

from model import sha256_hex
from training.dataset import Dataset, make_dataset
from training.errors import InvalidOptionsError

# Bump when the generator's algorithm changes, so fingerprints of different data differ.
GENERATOR_VERSION = 1
METRIC1_MAX = 244_000_000

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SyntheticParams:
    """Everything the generated data depends on; its digest is the data fingerprint."""

    devices: int = 600
    days: int = 120
    seed: int = 0
    failure_rate: float = 0.001  # of rows, as in the real data (0.085%)
    start: date = date(2015, 1, 1)

    def digest(self) -> str:
        """sha256 of the parameters and the generator version."""
        data = {**asdict(self), "start": self.start.isoformat(), "generator": GENERATOR_VERSION}
        return sha256_hex(json.dumps(data, sort_keys=True).encode())

    def describe(self) -> str:
        """A short source name for the registry."""
        return f"synthetic(devices={self.devices},days={self.days},seed={self.seed})"


@dataclass(frozen=True)
class _Fleet:
    """Row layout: which device each row belongs to and its day index."""

    device: IntArray
    day: IntArray
    first_row: IntArray  # per device, index of its first row
    last_row: IntArray  # per device, index of its last row


def generate_synthetic(
    devices: int = 600,
    days: int = 120,
    seed: int = 0,
    *,
    failure_rate: float = 0.001,
    start: date = date(2015, 1, 1),
) -> Dataset:
    """Generate a fleet's daily telemetry; deterministic given the arguments."""
    params = SyntheticParams(devices, days, seed, failure_rate, start)
    _validate(params)
    rng = np.random.default_rng(seed)
    fleet = _layout(rng, devices, days)
    y = _failures(rng, fleet, failure_rate)
    X = _metrics(rng, fleet, y)
    order = np.lexsort((fleet.device, fleet.day))  # the public file is sorted by date, device
    names = np.array([f"SY{i:06X}" for i in range(devices)])  # never a real device id
    dates = np.datetime64(start.isoformat(), "D") + fleet.day
    return make_dataset(
        X[order],
        y[order],
        names[fleet.device[order]],
        dates[order],
        sha256=f"synthetic:{params.digest()}",
        source=params.describe(),
        synthetic=True,
    )


def _validate(params: SyntheticParams) -> None:
    if params.devices < 2 or params.days < 2:
        raise InvalidOptionsError("synthetic data needs at least 2 devices and 2 days")
    if not 0.0 < params.failure_rate < 1.0:
        raise InvalidOptionsError("failure_rate must be between 0 and 1")


def _layout(rng: np.random.Generator, devices: int, days: int) -> _Fleet:
    # Most devices report from day one, some join later; lifetimes are exponential, so the
    # number reporting falls steadily over the period, as in the real fleet.
    late = rng.random(devices) < 0.1
    first_day = np.where(late, rng.integers(0, max(days // 3, 1), devices), 0)
    length = np.ceil(rng.exponential(0.45 * days, devices)).astype(np.int64)
    length = np.clip(length, 2, days - first_day)
    ends = np.cumsum(length)
    first_row = ends - length
    device = np.repeat(np.arange(devices), length)
    day = first_day[device] + np.arange(int(ends[-1])) - first_row[device]
    return _Fleet(device, day.astype(np.int64), first_row, ends - 1)


def _failures(rng: np.random.Generator, fleet: _Fleet, failure_rate: float) -> IntArray:
    # Each failing device fails once, on its last reported day.
    count = int(np.clip(round(failure_rate * fleet.day.size), 1, fleet.last_row.size))
    failing = rng.choice(fleet.last_row.size, size=count, replace=False)
    y = np.zeros(fleet.day.size, dtype=np.int64)
    y[fleet.last_row[failing]] = 1
    return y


def _zero_inflated(
    rng: np.random.Generator, fleet: _Fleet, nonzero: float, mu: float, sigma: float
) -> npt.NDArray[np.float64]:
    # A per-device propensity makes zeros and bursts cluster by device, as counters do.
    propensity = np.minimum(nonzero * rng.gamma(0.5, 2.0, fleet.first_row.size), 1.0)
    hit = rng.random(fleet.day.size) < propensity[fleet.device]
    values = np.floor(rng.lognormal(mu, sigma, fleet.day.size)) + 1.0
    return np.where(hit, values, 0.0)


def _cumulative(rng: np.random.Generator, fleet: _Fleet) -> npt.NDArray[np.float64]:
    # metric6 never decreases within a device: a start value plus a running sum.
    base = rng.integers(0, 400_000, fleet.first_row.size)
    steps = rng.poisson(rng.uniform(5.0, 60.0, fleet.first_row.size)[fleet.device])
    running = np.cumsum(steps)
    since_start = running - running[fleet.first_row][fleet.device]
    return (base[fleet.device] + since_start).astype(np.float64)


def _metrics(rng: np.random.Generator, fleet: _Fleet, y: IntArray) -> npt.NDArray[np.float64]:
    n = fleet.day.size
    X = np.empty((n, 8), dtype=np.float64)
    X[:, 0] = rng.integers(0, METRIC1_MAX, n)
    X[:, 1] = _zero_inflated(rng, fleet, 0.05, 6.5, 1.5)  # metric2
    X[:, 2] = _zero_inflated(rng, fleet, 0.07, 3.5, 1.5)  # metric3
    X[:, 3] = _zero_inflated(rng, fleet, 0.07, 2.0, 1.2)  # metric4
    X[:, 4] = np.clip(rng.poisson(12.0, fleet.first_row.size) + 1, 1, 98)[fleet.device]
    X[:, 5] = _cumulative(rng, fleet)
    X[:, 6] = _zero_inflated(rng, fleet, 0.01, 2.5, 1.2)  # metric7
    X[:, 7] = _zero_inflated(rng, fleet, 0.22, 2.5, 1.5)  # metric9
    _elevate_failures(rng, X, np.flatnonzero(y))
    return X


def _elevate_failures(
    rng: np.random.Generator, X: npt.NDArray[np.float64], rows: npt.NDArray[np.intp]
) -> None:
    # Failure rows show raised metric2/4/7 often but not always: learnable, not trivial.
    for column, chance, mu in ((1, 0.5, 8.0), (3, 0.5, 4.0), (6, 0.4, 4.0)):
        raised = rows[rng.random(rows.size) < chance]
        X[raised, column] += np.floor(rng.lognormal(mu, 1.0, raised.size)) + 1.0
