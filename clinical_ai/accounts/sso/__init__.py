"""Single sign-on: the gateway as an OpenID Connect relying party of the hospital's identity provider and of
EHRs' SMART authorization servers. The protocol (PKCE, state, nonce, code exchange, id_token checks) is
Authlib's; every request it makes goes through clinical_ai.core.http."""
