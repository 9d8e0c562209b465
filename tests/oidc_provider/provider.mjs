// The hospital's identity provider, played in the tests by panva's oidc-provider (OpenID Certified), with a
// sign-in page of our own instead of the package's development pages.
//
//   node provider.mjs CONFIG.json
//
// CONFIG.json: {"port": 0, "users": "/path/users.json", "clients": [{"client_id", "client_secret" (absent
// or "" = a public client), "redirect_uris", "post_logout_redirect_uris", "grant_types"}]}.
// Port 0 takes a free port; the issuer is then http://127.0.0.1:<port>, printed on stdout as the one line
//   oidc-provider ready {"issuer": "http://127.0.0.1:<port>"}
// once the provider answers. Everything else the package says goes to stderr.
//
// The users file ({"<sub>": {"password", "name", "given_name", "family_name", "email",
// "preferred_username", "groups": [...]}}) is read again at every account lookup, so a test changes
// someone's groups, or removes them, while the provider runs. A removed user's refresh token is refused
// (invalid_grant) and their access token is refused at userinfo (invalid_token): the package finds no
// account for them.

import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

function users() {
  // Read at every lookup, on purpose: the test changes the file while we run.
  return JSON.parse(readFileSync(config.users, 'utf8'));
}

function userFind(username) {
  const all = users();
  if (Object.hasOwn(all, username)) return [username, all[username]];
  const found = Object.entries(all).find(([, user]) => user.preferred_username === username);
  return found ?? [undefined, undefined];
}

const escapeHtml = (text) => String(text ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// Plain pages with nothing fetched from elsewhere (the browser tests refuse every other origin).
function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en-GB">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>${escapeHtml(title)}</title>
  <style>
    body { font-family: sans-serif; max-width: 24rem; margin: 2rem auto; padding: 0 1rem; }
    label { display: block; margin-top: 1rem; }
    input { display: block; width: 100%; padding: .5rem; font-size: 1rem; box-sizing: border-box; }
    button { margin-top: 1rem; padding: .6rem 1.2rem; font-size: 1rem; }
    .error { color: #a00; font-weight: bold; }
  </style>
</head>
<body>
  <h1>${escapeHtml(title)}</h1>
  ${body}
</body>
</html>`;
}

function loginPage(uid, { username = '', error = '' } = {}) {
  return page('Hospital sign-in', `
  ${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
  <form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
    <label for="username">Username</label>
    <input id="username" name="username" value="${escapeHtml(username)}" required autofocus>
    <label for="password">Password</label>
    <input id="password" name="password" type="password" required>
    <button type="submit">Sign in</button>
  </form>`);
}

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

const clients = config.clients.map((client) => {
  const isPublic = !client.client_secret;
  return {
    client_id: client.client_id,
    ...(isPublic ? {} : { client_secret: client.client_secret }),
    token_endpoint_auth_method: isPublic ? 'none' : (client.token_endpoint_auth_method ?? 'client_secret_basic'),
    redirect_uris: client.redirect_uris,
    post_logout_redirect_uris: client.post_logout_redirect_uris ?? [],
    grant_types: client.grant_types ?? ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    require_auth_time: true,
  };
});

const configuration = {
  clients,
  jwks: { keys: [signingKey()] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  // The granted scopes' claims go into the id_token as well as userinfo, as Entra ID and Keycloak do.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  responseTypes: ['code'],
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        ctx.body = page('Sign out', `
  <p>Sign out of the hospital login on this computer?</p>
  ${form}
  <button type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
  <button type="submit" form="op.logoutForm">No, stay signed in</button>`);
      },
      postLogoutSuccessSource: async (ctx) => {
        ctx.body = page('Signed out', '<p>You are signed out of the hospital login.</p>');
      },
    },
  },
  // Refresh tokens for every client allowed the grant, without asking for offline_access (the gateway
  // refreshes to re-check someone's groups while they work).
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  // These are first-party clients of the hospital: no consent screen. The grant covers whatever the
  // client asked for this time.
  loadExistingGrant: async (ctx) => {
    const { oidc } = ctx;
    const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
    let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
    if (!grant || grant.accountId !== oidc.session.accountId) {
      grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
    }
    grant.addOIDCScope([...oidc.requestParamScopes].join(' '));
    if (oidc.requestParamClaims.size) grant.addOIDCClaims([...oidc.requestParamClaims]);
    await grant.save();
    return grant;
  },
  findAccount: async (ctx, sub) => {
    if (!Object.hasOwn(users(), sub)) return undefined;
    return {
      accountId: sub,
      async claims() {
        const user = users()[sub] ?? {};
        return {
          sub,
          name: user.name,
          given_name: user.given_name,
          family_name: user.family_name,
          preferred_username: user.preferred_username ?? sub,
          email: user.email,
          email_verified: user.email ? true : undefined,
          groups: user.groups ?? [],
        };
      },
    };
  },
  clientBasedCORS: () => false,
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    const details = Object.entries(out).map(([key, value]) => `<p>${escapeHtml(key)}: ${escapeHtml(value)}</p>`);
    ctx.body = page('Sign-in problem', details.join('\n'));
  },
  ttl: {
    AccessToken: 600,
    AuthorizationCode: 60,
    IdToken: 600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
    RefreshToken: 3600,
    // A test may shorten a lifetime (config.ttl, e.g. {"IdToken": 1} for an id_token that expires).
    ...(config.ttl ?? {}),
  },
};

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function sendHtml(res, status, html) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(html);
}

async function interaction(provider, req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.prompt.name !== 'login') {
    // Consent is granted by loadExistingGrant; nothing else should ask us.
    await provider.interactionFinished(req, res, { consent: {} }, { mergeWithLastSubmission: true });
    return;
  }
  if (req.method === 'GET' && !action) {
    sendHtml(res, 200, loginPage(uid, { username: details.params.login_hint }));
    return;
  }
  if (req.method === 'POST' && action === 'login') {
    const form = await readForm(req);
    const username = form.get('username') ?? '';
    const [sub, user] = userFind(username);
    if (!user || user.password !== form.get('password')) {
      sendHtml(res, 200, loginPage(uid, { username, error: 'Wrong username or password' }));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: sub } }, { mergeWithLastSubmission: false });
    return;
  }
  sendHtml(res, 405, page('Sign-in problem', '<p>That page cannot be used this way.</p>'));
}

let provider;
let providerCallback;
const server = createServer((req, res) => {
  const match = /^\/interaction\/([\w-]+)(?:\/(\w+))?\/?(?:\?.*)?$/.exec(req.url);
  if (!match) {
    providerCallback(req, res);
    return;
  }
  interaction(provider, req, res, match[1], match[2]).catch((error) => {
    process.stderr.write(`interaction failed: ${error.stack ?? error}\n`);
    if (!res.headersSent) sendHtml(res, 400, page('Sign-in problem', `<p>${escapeHtml(error.message)}</p>`));
  });
});

server.listen(config.port ?? 0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  provider = new Provider(issuer, configuration);
  providerCallback = provider.callback();
  provider.on('server_error', (ctx, error) => process.stderr.write(`server_error: ${error.stack ?? error}\n`));
  process.stdout.write(`oidc-provider ready ${JSON.stringify({ issuer })}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
// The test run holds our stdin open: when it ends, even killed, so do we (no provider outlives its tests).
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
