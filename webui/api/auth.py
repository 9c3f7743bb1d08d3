"""Tokens: exchange a password for an expiring token, and revoke the token in use."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import g, request

from engine.errors import LoginLocked
from webui.api.access import PUBLIC, ApiError, endpoint, engine, error_response
from webui.api.schemas import Credentials, RevokedSchema, TokenSchema

TOKEN_LIFETIME = timedelta(hours=12)


@endpoint("POST", "/auth/token", access=PUBLIC, rule="anyone with a username and password; after "
          "OPSFLOW_LOGIN_MAX_FAILURES failures for the name within OPSFLOW_LOGIN_WINDOW, nobody until it passes",
          summary="Exchange a username and password for an API token (valid 12 hours)", tag="auth",
          body=Credentials, response=TokenSchema, status=201, errors=(401, 429))
def create_token(body: dict[str, Any]) -> Any:
    eng = engine()
    try:
        user = eng.identity.login(body["username"], body["password"], request.remote_addr or "-")
    except LoginLocked as locked:  # the same count as the login page (engine: identity.login)
        response, status = error_response(429, locked.code, locked.message, locked.details)
        response.headers["Retry-After"] = str(locked.retry_after)
        return response, status
    if user is None:
        raise ApiError(401, "unauthorized", "unknown user or wrong password")
    issued = eng.ctx.now()
    token = eng.identity.create_token(user.username, valid_for=TOKEN_LIFETIME)
    return {"token": token, "token_type": "Bearer", "username": user.username, "roles": sorted(user.roles),
            "expires_at": issued + TOKEN_LIFETIME}


@endpoint("DELETE", "/auth/token", rule="the holder of the token (it revokes itself)",
          summary="Revoke the token this request is made with", tag="auth", response=RevokedSchema)
def revoke_token() -> dict[str, Any]:
    return {"revoked": engine().identity.revoke_token(g.api_token)}
