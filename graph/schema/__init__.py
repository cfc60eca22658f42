"""The GraphQL schema, and how a document is checked, planned and executed against it.

- `root`, `types`, `inputs`, `audit_types`: the schema's types and resolvers (strawberry);
- `permissions`: the one map from root field to scope, applied by a declared permission class;
- `documents`: each query text parsed, limit-checked and validated once, cached per app;
- `plans`: compiled plans answering predict documents column by column;
- `execution`: one operation from document to result, through a plan or the executor.
"""

import strawberry

from graph.schema.root import Mutation, Query, Subscription


def build_schema() -> strawberry.Schema:
    """The strawberry schema (types and resolvers; execution is graph.schema.execution's)."""
    return strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)
