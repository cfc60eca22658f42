"""Documents: limits checked in one linear walk, cost programs, and a cache bounded in bytes."""

import asyncio
import gc
import time
import tracemalloc

import pytest

from graph.errors import ErrorCode
from graph.schema import build_schema
from graph.schema.documents import DocumentCache, Prepared
from graph.settings import Limits

SCHEMA = build_schema()._schema


def _cache(**limits: object) -> DocumentCache:
    return DocumentCache(SCHEMA, Limits(**limits))  # type: ignore[arg-type]


def _refusal(query: str, **limits: object) -> ErrorCode | None:
    prepared = _cache(**limits).prepare(query)
    return prepared.refusal.code if prepared.refusal else None


def bomb(levels: int) -> str:
    """Fragments that each spread the next one twice: 2^levels fields once expanded."""
    fragments = " ".join(
        f"fragment F{i} on Me {{ subject ...F{i + 1} ...F{i + 1} }}" for i in range(levels)
    )
    return "{ me { ...F0 } } " + fragments + f" fragment F{levels} on Me {{ subject }}"


def test_a_fragment_bomb_is_refused_in_time_linear_in_its_text():
    timings = {}
    for levels in (10, 20, 40):
        started = time.perf_counter()
        assert _refusal(bomb(levels), max_fragment_spreads=1000) is ErrorCode.QUERY_TOO_COMPLEX
        timings[levels] = time.perf_counter() - started
    # 2^40 fields expanded would never finish; a walk linear in the text takes about 4x 10 levels
    assert timings[40] < 20 * timings[10] + 0.05, timings


def test_fragment_cycles_are_refused_by_name():
    prepared = _cache().prepare(
        "{ me { ...A } } fragment A on Me { ...B } fragment B on Me { subject ...A }"
    )
    assert prepared.refusal is not None
    assert prepared.refusal.code is ErrorCode.GRAPHQL_VALIDATION_FAILED
    assert "A -> B -> A" in prepared.refusal.message


def test_fragment_spreads_are_capped():
    spreads = " ".join(["...F"] * 6)
    query = "{ me { %s } } fragment F on Me { subject }" % spreads
    assert _refusal(query, max_fragment_spreads=6) is None
    assert _refusal(query, max_fragment_spreads=5) is ErrorCode.QUERY_TOO_COMPLEX


def test_fields_repeated_in_a_set_are_refused_by_the_pairs_validation_would_compare():
    query = "{ me { %s } }" % " ".join(["subject"] * 5)  # 10 pairs
    assert _refusal(query, max_field_pairs=10) is None
    assert _refusal(query, max_field_pairs=9) is ErrorCode.QUERY_TOO_COMPLEX


def test_pairs_count_the_sub_selections_compared_for_each_pair():
    query = "{ %s }" % " ".join(["me { subject scopes }"] * 4)  # 6 pairs x (1 + 2 fields)
    assert _refusal(query, max_field_pairs=18) is None
    assert _refusal(query, max_field_pairs=17) is ErrorCode.QUERY_TOO_COMPLEX


def test_repeats_through_fragments_count_once_each_spread():
    query = "{ me { subject ...F ...F } } fragment F on Me { subject }"
    assert _refusal(query, max_field_pairs=3) is None
    assert _refusal(query, max_field_pairs=2) is ErrorCode.QUERY_TOO_COMPLEX


def test_aliases_and_depth_count_through_fragments():
    query = "{ me { ...F ...F } } fragment F on Me { a: subject b: scopes }"
    assert _refusal(query, max_aliases=4) is None
    assert _refusal(query, max_aliases=3) is ErrorCode.TOO_MANY_ALIASES
    deep = "{ a { ...F } } fragment F on X { b { c { d } } }"
    assert _refusal(deep, max_depth=4) is None
    assert _refusal(deep, max_depth=3) is ErrorCode.QUERY_TOO_DEEP


def test_the_query_text_size_is_capped_before_parsing():
    padded = "#" + "x" * 2000 + "\n{ me { subject } }"
    assert _refusal(padded, max_query_bytes=4096) is None
    assert _refusal(padded, max_query_bytes=1024) is ErrorCode.REQUEST_TOO_LARGE


def test_comments_count_against_the_token_limit():
    commented = "\n".join(["# c"] * 30) + "\n{ me { subject } }"
    assert _refusal(commented, max_tokens=40) is None
    assert _refusal(commented, max_tokens=20) is ErrorCode.TOO_MANY_TOKENS


@pytest.mark.parametrize(
    ("query", "variables", "cost"),
    [
        ("{ me { subject } }", {}, 1),
        ("{ predictions { nodes { id } } }", {}, 20 * 2),  # the schema's default page
        ("query Q($n: Int) { predictions(first: $n) { nodes { id } } }", {"n": 7}, 7 * 2),
        ("query Q($n: Int) { predictions(first: $n) { nodes { id } } }", {}, 20 * 2),
        (
            "{ predictions(first: 3) { ...P ...P } } fragment P on PredictionConnection "
            "{ nodes { modelVersion { metrics } } }",
            {},
            3 * (1 + 2 * (1 + 1 + 5)),
        ),
        (
            "mutation M($r: [PredictInput!]!) { predictBatch(inputs: $r) { id input { metric1 } } }",
            {"r": [{}] * 40},
            40 * 2,
        ),
    ],
)
def test_costs_expand_fragments_and_multiply_by_pages_and_batches(query, variables, cost):
    prepared = _cache().prepare(query)
    assert prepared.refusal is None and prepared.errors == [], prepared.errors
    assert prepared.cost(prepared.operation(None), variables, 10**9) == cost


def test_a_columns_answer_counts_its_lists_once_and_its_explanations_at_the_batch_limit():
    from graph.settings import Settings

    cache = DocumentCache(SCHEMA, Settings(max_batch_size=700).limits)
    query = (
        "mutation M($c: PredictColumnsInput!) { predictColumns(input: $c) { failureProbability "
        "label input { metric1 } explanation { score contributions { value } } "
        "modelVersion { version } } }"
    )
    prepared = cache.prepare(query)
    assert prepared.refusal is None and prepared.errors == [], prepared.errors
    columns = {"metric1": [0.0] * 700}  # the lists' lengths do not count: their bound does
    # the payload, two lists of leaves, input and its list, 700 explanations with their
    # contributions, the model version
    assert prepared.cost(prepared.operation(None), columns, 10**9) == 1 + 2 + 2 + 700 * 2 + 1
    cache.close()


def test_costs_of_a_bomb_like_program_are_evaluated_once_per_fragment():
    levels = 30
    fragments = " ".join(
        f"fragment F{i} on PredictionConnection {{ nodes {{ id }} ...F{i + 1} ...F{i + 1} }}"
        for i in range(levels)
    )
    query = (
        "{ predictions(first: 1) { ...F0 } } "
        + fragments
        + f" fragment F{levels} on PredictionConnection {{ nodes {{ id }} }}"
    )
    prepared = _cache(max_fields=10**30, max_field_pairs=10**30, max_fragment_spreads=1000).prepare(
        query
    )
    assert prepared.refusal is None, prepared.refusal
    ceiling = 10_000
    started = time.perf_counter()
    assert prepared.cost(prepared.operation(None), {}, ceiling) == ceiling + 1
    assert time.perf_counter() - started < 0.5


def _size_of(query: str) -> tuple[int, Prepared]:
    # Under tracemalloc a check runs several times slower: a budget of 50 ms of CPU refused the
    # 15 aliases on a slow host (57 ms), and a refusal holds less than the entry measured here.
    cache = _cache(check_budget_ms=60_000.0)
    cache.prepare(query + " ")  # warm graphql-core's own caches: they are not the entry's
    gc.collect()
    tracemalloc.start()
    prepared = cache.prepare(query)
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    cache.close()
    return current, prepared


@pytest.mark.parametrize(
    "query",
    [
        "{ me { subject } }",
        "{ "
        + " ".join(f"p{i}: predictions(first: 5) {{ nodes {{ id label }} }}" for i in range(15))
        + " }",
        "mutation M($r: [PredictInput!]!) { predictBatch(inputs: $r) { id createdAt deviceId "
        "label failureProbability threshold input { metric1 metric2 metric3 metric4 metric5 "
        "metric6 metric7 metric9 } modelVersion { version algorithm metrics params } } }",
        "# " + "padding " * 4000 + "\n{ me { subject } }",
    ],
)
def test_the_size_charged_to_an_entry_covers_the_memory_it_holds(query):
    measured, prepared = _size_of(query)
    assert prepared.size >= measured, (prepared.size, measured)


def test_the_cache_stays_within_its_byte_budget_and_evicts_the_oldest():
    cache = DocumentCache(SCHEMA, Limits(), max_bytes=200_000)
    queries = [f"{{ me {{ subject }} }} # {i} " + "x" * 5000 for i in range(60)]

    async def fill() -> None:
        for query in queries:
            await cache.get(query)

    asyncio.run(fill())
    assert cache.bytes <= 200_000 and 0 < len(cache) < len(queries)
    assert queries[-1] in cache._items and queries[0] not in cache._items
    cache.close()


def test_concurrent_requests_with_a_new_text_share_one_preparation(monkeypatch):
    cache = _cache()
    calls = []
    real = cache.prepare

    def counted(query: str) -> Prepared:
        calls.append(query)
        time.sleep(0.05)
        return real(query)

    monkeypatch.setattr(cache, "prepare", counted)

    async def many() -> list[Prepared]:
        return await asyncio.gather(*(cache.get("{ me { subject } }") for _ in range(20)))

    results = asyncio.run(many())
    assert len(calls) == 1 and all(r is results[0] for r in results)
    cache.close()


def test_the_cache_bounds_the_nodes_every_full_garbage_collection_walks():
    cache = DocumentCache(SCHEMA, Limits(), max_nodes=100)
    queries = ["{ me { subject } } # %d" % i for i in range(200)]

    async def fill() -> None:
        for query in queries:
            await cache.get(query)

    asyncio.run(fill())
    assert 0 < cache.nodes <= 100 and 0 < len(cache) < 100
    cache.close()
