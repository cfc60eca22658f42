"""Authentication for failcast: JWT bearer tokens to Principals with scopes."""

from auth.config import MIN_SECRET_BYTES, AuthConfig, check_production_ready
from auth.errors import AuthConfigError, AuthError, Reason
from auth.minting import generate_secret, mint_token, mint_with_private_key, parse_ttl
from auth.principal import Principal
from auth.scopes import ALL_SCOPES, Scope, parse_scopes, parse_scopes_strict
from auth.verifier import TokenVerifier

__all__ = [
    "ALL_SCOPES",
    "MIN_SECRET_BYTES",
    "AuthConfig",
    "AuthConfigError",
    "AuthError",
    "Principal",
    "Reason",
    "Scope",
    "TokenVerifier",
    "check_production_ready",
    "generate_secret",
    "mint_token",
    "mint_with_private_key",
    "parse_scopes",
    "parse_scopes_strict",
    "parse_ttl",
]
