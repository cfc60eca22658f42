"""Labels for a failure horizon: a row is positive when its device fails within N days of it.

The data records failures as events: `failure = 1` on the day a device failed. For a horizon of
N days, a row dated d of device D is labelled 1 when D has a failure dated f with
0 <= f - d < N: N = 1 is the event itself (the meaning failcast always had), N = 7 "fails
within the week". Rows after a failure are not positives of it.
"""

import numpy as np

from training.dataset import Dataset, IntArray
from training.errors import InvalidOptionsError

DEFAULT_HORIZON_DAYS = 1
MAX_HORIZON_DAYS = 365


def horizon_labels(dataset: Dataset, days: int) -> IntArray:
    """1 where the row's device fails within `days` days on or after the row's date."""
    if not 1 <= days <= MAX_HORIZON_DAYS:
        raise InvalidOptionsError(f"horizon_days must be between 1 and {MAX_HORIZON_DAYS}")
    _, codes = np.unique(dataset.devices, return_inverse=True)
    day = dataset.dates.astype("datetime64[D]").astype(np.int64)
    # One sortable key per (device, day): a failure of the same device at or after a row's day
    # is the first event key >= the row's key with the same device.
    span = int(day.max() - day.min()) + 1
    keys = codes.astype(np.int64) * span + (day - day.min())
    events = np.sort(keys[dataset.y == 1])
    if events.size == 0:
        return np.zeros(len(dataset), dtype=np.int64)
    at = np.minimum(np.searchsorted(events, keys, side="left"), events.size - 1)
    following = events[at]
    same_device = following // span == keys // span
    ahead = following - keys
    labels: IntArray = (same_device & (ahead >= 0) & (ahead < days)).astype(np.int64)
    return labels


def with_horizon(dataset: Dataset, days: int) -> Dataset:
    """The dataset labelled for a horizon (its fingerprint still names the source's events)."""
    return dataset.relabelled(horizon_labels(dataset, days))
