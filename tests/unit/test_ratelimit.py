"""Token buckets: burst, refill, batches, and the per-process share of a deployment's rate."""

from graph.runtime.ratelimit import Rate, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refusal_with_the_wait_until_refill():
    clock = Clock()
    limiter = RateLimiter({"predict": Rate(per_second=2, burst=3)}, clock)
    assert [limiter.acquire("a", "predict") for _ in range(3)] == [None, None, None]
    assert limiter.acquire("a", "predict") == 0.5
    clock.now += 0.5
    assert limiter.acquire("a", "predict") is None


def test_subjects_and_scopes_have_their_own_buckets():
    limiter = RateLimiter({"predict": Rate(1, 1), "audit:read": Rate(1, 1)}, Clock())
    assert limiter.acquire("a", "predict") is None
    assert limiter.acquire("b", "predict") is None
    assert limiter.acquire("a", "audit:read") is None
    assert limiter.acquire("a", "predict") is not None


def test_unlimited_scope_is_never_refused():
    limiter = RateLimiter({}, Clock())
    assert all(limiter.acquire("a", "models:read") is None for _ in range(1000))


def test_a_batch_costs_one_token_per_input():
    limiter = RateLimiter({"predict": Rate(10, 10)}, Clock())
    assert limiter.acquire("a", "predict", cost=10) is None
    assert limiter.acquire("a", "predict", cost=1) is not None


def test_each_of_n_processes_enforces_a_share_of_the_rate():
    clock = Clock()
    limiter = RateLimiter({"predict": Rate(per_second=10, burst=10)}, clock)
    limiter.processes = 2
    allowed = sum(limiter.acquire("a", "predict") is None for _ in range(20))
    assert allowed == 5
    clock.now += 1.0
    assert sum(limiter.acquire("a", "predict") is None for _ in range(20)) == 5
