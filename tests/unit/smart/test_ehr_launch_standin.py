"""The SMART EHR stand-in itself, over real HTTP: one EHR launch from /authorize to a verified id_token."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.ehr_launch import EhrLaunchStandIn

APP_CALLBACK = "http://testserver/launch/callback"


def _authorize(
    ehr: EhrLaunchStandIn, config: dict[str, Any], verifier: str, **extra: str
) -> dict[str, list[str]]:
    params = {
        "response_type": "code",
        "client_id": "clinical-ai",
        "redirect_uri": APP_CALLBACK,
        "scope": "launch openid fhirUser",
        "state": "the-state",
        "nonce": "the-nonce",
        "aud": ehr.fhir_base,
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
        **extra,
    }
    response = requests.get(config["authorization_endpoint"], params=params, allow_redirects=False, timeout=5)
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(APP_CALLBACK)
    return parse_qs(urlsplit(location).query)


def test_one_ehr_launch_through_the_stand_in(smart_ehr: EhrLaunchStandIn) -> None:
    ehr = smart_ehr
    ehr.register_client("clinical-ai", [APP_CALLBACK], secret="app-secret")
    launch = ehr.new_launch(patient="123", fhir_user="Practitioner/abc", app_context='{"suggestion": "s-1"}')
    assert ehr.launch_url("http://testserver/launch", launch) == (
        f"http://testserver/launch?{urlencode({'iss': ehr.fhir_base, 'launch': launch})}"
    )
    config = requests.get(f"{ehr.fhir_base}/.well-known/smart-configuration", timeout=5).json()
    assert {"launch-ehr", "sso-openid-connect", "context-ehr-patient"} <= set(config["capabilities"])
    assert (
        requests.get(f"{config['issuer']}/.well-known/openid-configuration", timeout=5).json()["issuer"]
        == ehr.issuer
    )

    # Refused and sent back: another aud, an unknown launch, no PKCE.
    verifier = secrets.token_urlsafe(48)
    assert _authorize(ehr, config, verifier, launch=launch, aud="http://elsewhere/fhir")["error"] == [
        "invalid_request"
    ]
    assert _authorize(ehr, config, verifier, launch="nope")["error"] == ["invalid_request"]
    no_pkce = _authorize(ehr, config, verifier, launch=launch, code_challenge="", code_challenge_method="")
    assert no_pkce["error"] == ["invalid_request"]

    back = _authorize(ehr, config, verifier, launch=launch)
    assert back["state"] == ["the-state"]
    form = {"grant_type": "authorization_code", "code": back["code"][0], "redirect_uri": APP_CALLBACK}
    wrong = requests.post(
        config["token_endpoint"],
        data={**form, "code_verifier": "x" * 43},
        auth=("clinical-ai", "app-secret"),
        timeout=5,
    )
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    back = _authorize(ehr, config, verifier, launch=launch, nonce="nonce-2")
    form["code"] = back["code"][0]
    token = requests.post(
        config["token_endpoint"],
        data={**form, "code_verifier": verifier},
        auth=("clinical-ai", "app-secret"),
        timeout=5,
    )
    assert token.status_code == 200, token.text
    body = token.json()
    assert (
        body["patient"] == "123" and body["appContext"] == '{"suggestion": "s-1"}' and "encounter" not in body
    )
    assert body["scope"] == "launch openid fhirUser" and body["token_type"] == "Bearer"

    keys = KeySet.import_key_set(requests.get(config["jwks_uri"], timeout=5).json())
    claims = jwt.decode(body["id_token"], keys, algorithms=["RS256"]).claims
    assert claims["iss"] == ehr.issuer and claims["aud"] == "clinical-ai" and claims["nonce"] == "nonce-2"
    assert claims["fhirUser"] == f"{ehr.fhir_base}/Practitioner/abc" and claims["sub"] == "abc"
    assert claims["iat"] <= claims["auth_time"] + 5 and claims["exp"] > claims["iat"]
