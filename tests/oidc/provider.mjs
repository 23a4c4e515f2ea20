// A real OpenID Connect provider (npm `oidc-provider` v9) for the gateway's end-to-end tests.
//
// NOT for production: dev interactions, in-memory storage, plain http on 127.0.0.1.
//
// Usage:  OIDC_CONFIG='<json>' node provider.mjs
// Prints exactly one line `READY <issuer>` on stdout once it is listening; SIGTERM/SIGINT stop it.
// Everything else (oidc-provider's warnings, errors) goes to stderr.
//
// OIDC_CONFIG (JSON object; every key optional except where noted):
//   port            int     TCP port to bind on 127.0.0.1 (always loopback). 0/absent: ephemeral;
//                           the real port is in the READY line.
//   issuer          string  Issuer URL. Default `http://127.0.0.1:<port>`. Must be reachable at the
//                           bound port (no path prefix support).
//   clients         list    OAuth clients, oidc-provider client metadata in snake_case:
//                             client_id (required), client_secret, redirect_uris,
//                             post_logout_redirect_uris, grant_types, response_types,
//                             token_endpoint_auth_method, scope, ...
//                           plus test-only keys (removed before oidc-provider sees them):
//                             token_claims  object  claims merged INTO (and overriding) the payload
//                                                   of every JWT access token issued to this client
//                                                   by client_credentials, e.g. {"groups": [..]};
//                                                   may override sub/aud/iss for negative tests.
//                             skip_consent  bool    grant every requested scope/claim without a
//                                                   consent screen (first-party client).
//   users           list    Accounts: {username (required, the login name), password (required),
//                           sub (default: username), email, email_verified (default true), name,
//                           groups (list of strings)}.
//   resources       object  {"<resource indicator>": {scope, audience, ttl}}: the resource servers
//                           (RFC 8707) that accept JWT access tokens. Absent: ANY absolute URI is
//                           accepted as a resource, with audience = the indicator and the scopes of
//                           `default_resource_scope`. `scope` is a space-separated string of the
//                           resource's own scopes (requested scopes outside it are dropped).
//                           Access tokens for a resource are RS256 JWTs (header typ "at+jwt")
//                           signed with the provider's key: iss, aud, sub (client_id for
//                           client_credentials, else the user's sub), client_id, scope, exp, iat,
//                           jti; user tokens also carry groups, email, preferred_username.
//                           A `resource` given at /auth is kept for the code exchange.
//   default_resource_scope string  Default "" (no resource scope).
//   jwks            object  {"keys": [private RSA JWK with kid]}: fixed signing key(s). Absent: a
//                           fresh RSA-2048 key is generated at start (kid "test-<random>").
//                           `key_ops` is dropped from given keys (see below).
//   access_token_ttl int    Seconds, default 3600.
//   cookie_keys     list    Cookie signing keys. Absent: random.
//
// Login (devInteractions form): the "login" field is the username, the "password" field is checked
// against `users` by a small middleware in front of oidc-provider's dev interaction submit handler
// (oidc-provider itself accepts any password there). A wrong/unknown login answers 401 with a
// page that links back to the form; the interaction stays usable.
//
// Also: PKCE (S256) is required for every authorization request; scopes openid email profile
// groups offline_access; ID tokens carry the granted claims (conformIdTokenClaims: false);
// client_credentials, introspection, revocation and RP-initiated logout are enabled. OAuth errors
// are logged to stderr with their cause. Pages never reference outside hosts (the built-in Google
// font import is stripped).

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as querystring from 'node:querystring';

import Provider, { errors } from 'oidc-provider';

const LOOPBACK = '127.0.0.1';
const SCOPES = ['openid', 'email', 'profile', 'groups', 'offline_access'];
const CLAIMS = {
  acr: null,
  sid: null,
  auth_time: null,
  iss: null,
  openid: ['sub'],
  email: ['email', 'email_verified'],
  profile: ['name', 'preferred_username'],
  groups: ['groups'],
};
const TEST_ONLY_CLIENT_KEYS = ['token_claims', 'skip_consent'];

function fail(message) {
  process.stderr.write(`provider.mjs: ${message}\n`);
  process.exit(2);
}

function loadConfig() {
  const raw = process.env.OIDC_CONFIG;
  if (!raw) fail('OIDC_CONFIG (JSON) is not set');
  let config;
  try {
    config = JSON.parse(raw);
  } catch (err) {
    fail(`OIDC_CONFIG is not valid JSON: ${err.message}`);
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    fail('OIDC_CONFIG must be a JSON object');
  }
  return config;
}

function generateJwks() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    keys: [{ ...jwk, kid: `test-${crypto.randomBytes(6).toString('hex')}`, alg: 'RS256', use: 'sig' }],
  };
}

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function readRawBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 56 * 1024) throw new Error('request entity too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function buildProvider(config, issuer) {
  const users = new Map();
  for (const user of config.users ?? []) {
    if (!user.username || typeof user.password !== 'string') {
      fail(`every user needs a username and a password: ${JSON.stringify(user)}`);
    }
    users.set(user.username, { ...user, sub: user.sub ?? user.username });
  }
  const accountsBySub = new Map([...users.values()].map((u) => [u.sub, u]));

  const clientExtras = new Map();
  const clients = (config.clients ?? []).map((client) => {
    if (!client.client_id) fail(`every client needs a client_id: ${JSON.stringify(client)}`);
    const metadata = { ...client };
    const extras = {};
    for (const key of TEST_ONLY_CLIENT_KEYS) {
      if (key in metadata) {
        extras[key] = metadata[key];
        delete metadata[key];
      }
    }
    clientExtras.set(client.client_id, extras);
    return metadata;
  });

  const resources = config.resources ?? null;
  const defaultResourceScope = config.default_resource_scope ?? '';
  const accessTokenTTL = config.access_token_ttl ?? 3600;

  const provider = new Provider(issuer, {
    clients,
    // key_ops (e.g. PyJWT's ["sign"]) would stop oidc-provider from verifying its own ID tokens
    // (id_token_hint at logout): drop it, `use: "sig"` says enough.
    jwks: config.jwks
      ? { keys: config.jwks.keys.map(({ key_ops: _ignored, ...key }) => key) }
      : generateJwks(),
    cookies: {
      keys: config.cookie_keys ?? [crypto.randomBytes(32).toString('base64url')],
    },
    scopes: SCOPES,
    claims: CLAIMS,
    // Put the granted scopes' claims (groups, email, ...) into the ID token itself, not only into
    // the userinfo response.
    conformIdTokenClaims: false,
    ttl: {
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? accessTokenTTL,
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? accessTokenTTL,
    },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, indicator) => {
          let entry;
          if (resources) {
            entry = resources[indicator];
            if (!entry) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
          } else {
            entry = {};
          }
          return {
            scope: entry.scope ?? defaultResourceScope,
            audience: entry.audience ?? indicator,
            accessTokenTTL: entry.ttl ?? accessTokenTTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    formats: {
      customizers: {
        // Called for every JWT-format access token (i.e. every token with a resource).
        async jwt(_ctx, token, jwt) {
          if (token.accountId) {
            const account = accountsBySub.get(token.accountId);
            if (account) {
              jwt.payload.groups ??= account.groups ?? [];
              if (account.email) jwt.payload.email ??= account.email;
              jwt.payload.preferred_username ??= account.username;
            }
          } else {
            const extras = clientExtras.get(token.clientId) ?? {};
            Object.assign(jwt.payload, extras.token_claims ?? {});
          }
        },
      },
    },
    async findAccount(_ctx, sub) {
      const account = accountsBySub.get(sub);
      if (!account) return undefined;
      return {
        accountId: sub,
        async claims() {
          return {
            sub,
            email: account.email,
            email_verified: account.email ? (account.email_verified ?? true) : undefined,
            name: account.name,
            preferred_username: account.username,
            groups: account.groups ?? [],
          };
        },
      };
    },
    async loadExistingGrant(ctx) {
      const { client, session } = ctx.oidc;
      const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      if (!clientExtras.get(client.clientId)?.skip_consent) return undefined;
      const grant = new ctx.oidc.provider.Grant({
        clientId: client.clientId,
        accountId: session.accountId,
      });
      grant.addOIDCScope(SCOPES.join(' '));
      grant.addOIDCClaims(Object.values(CLAIMS).filter(Array.isArray).flat());
      for (const indicator of Object.keys(ctx.oidc.resourceServers ?? {})) {
        grant.addResourceScope(indicator, ctx.oidc.resourceServers[indicator].scope ?? '');
      }
      await grant.save();
      return grant;
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>oops! something went wrong</title></head>
<body><h1>oops! something went wrong</h1>
${Object.entries(out).map(([k, v]) => `<pre><strong>${escapeHtml(k)}</strong>: ${escapeHtml(v)}</pre>`).join('\n')}
</body></html>`;
    },
  });

  // Page post-processing: the built-in pages @import a Google font. The test machines must not talk to
  // anything but loopback, so drop it.
  provider.use(async (ctx, next) => {
    await next();
    if (typeof ctx.body === 'string' && ctx.response.is('html')) {
      ctx.body = ctx.body.replace(/@import url\(https?:\/\/fonts\.googleapis\.com[^)]*\);?/g, '');
    }
  });

  // Password check in front of the dev interaction form submit (POST /interaction/:uid).
  provider.use(async (ctx, next) => {
    const match = /^\/interaction\/([^/]+)$/.exec(ctx.path);
    if (ctx.method !== 'POST' || !match || !ctx.is('application/x-www-form-urlencoded')) {
      return next();
    }
    const raw = await readRawBody(ctx.req);
    const body = querystring.parse(raw);
    if (body.prompt === 'login') {
      const user = users.get(String(body.login ?? ''));
      const given = Buffer.from(String(body.password ?? ''));
      const expected = Buffer.from(user?.password ?? '');
      const ok = user !== undefined
        && given.length === expected.length
        && crypto.timingSafeEqual(given, expected);
      if (!ok) {
        ctx.status = 401;
        ctx.type = 'html';
        ctx.set('cache-control', 'no-store');
        ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Sign-in failed</title></head>
<body><h1>Sign-in failed</h1><p id="error">Invalid username or password.</p>
<p><a id="retry" href="${escapeHtml(`/interaction/${match[1]}`)}">Try again</a></p></body></html>`;
        return undefined;
      }
      body.login = user.sub;
    }
    // oidc-provider's own body parser falls back to req.body once the stream has been consumed.
    ctx.req.body = querystring.stringify(body);
    return next();
  });

  return provider;
}

async function main() {
  const config = loadConfig();
  let handler = (_req, res) => {
    res.statusCode = 503;
    res.end('starting');
  };
  const server = http.createServer((req, res) => handler(req, res));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port ?? 0, LOOPBACK, resolve);
  });
  const { port } = server.address();
  const issuer = config.issuer ?? `http://${LOOPBACK}:${port}`;

  const provider = buildProvider(config, issuer);
  provider.on('server_error', (_ctx, err) => {
    process.stderr.write(`server_error: ${err.stack ?? err}\n`);
  });
  // Every OAuth error answer gets a line on stderr (the test log): much easier debugging.
  for (const event of ['authorization.error', 'grant.error', 'end_session.error',
    'userinfo.error', 'introspection.error', 'revocation.error', 'jwks.error',
    'discovery.error', 'check_session.error', 'backchannel.error']) {
    provider.on(event, (_ctx, err) => {
      const cause = err.cause ? ` (cause: ${err.cause.message ?? err.cause})` : '';
      process.stderr.write(`${event}: ${err.message}: ${err.error_description ?? ''}${cause}\n`);
    });
  }
  handler = provider.callback();

  let stopping = false;
  const stop = (signal) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`provider.mjs: ${signal}, stopping\n`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  process.stdout.write(`READY ${issuer}\n`);
}

main().catch((err) => {
  process.stderr.write(`provider.mjs: ${err.stack ?? err}\n`);
  process.exit(1);
});
