// A real OpenID Provider for the SSO tests: the npm `oidc-provider` package (pinned, installed
// under target/tools/ by `cargo xtask test`), configured from the environment by
// crates/testkit/src/oidc.rs. Accounts sign in through its development login form (any
// password); their claims come from the JSON file OIDC_ACCOUNTS_FILE, read at every sign-in so
// a test can change an account's groups between sign-ins.
//
// An account may carry `_id_token` to make the provider misbehave the way a broken or hostile
// provider would: `{"claims": {...}}` overrides claims of the ID token it issues (for example
// `aud`, a token meant for another client), and `{"expired_secs_ago": N}` issues one that
// expired N seconds ago (a provider with a slow clock). The token is then signed again with the
// provider's own published key, so only the overridden claims are wrong.
import { readFileSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';
import { SignJWT, decodeJwt, importJWK } from 'jose';

// Port 0: the system picks a free port, and the line printed once the provider answers tells
// the test which (no port is picked by one process and bound later by another).
const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;
const clients = JSON.parse(process.env.OIDC_CLIENTS);
const accounts = () => JSON.parse(readFileSync(process.env.OIDC_ACCOUNTS_FILE, 'utf8'));

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-signing-key', alg: 'RS256', use: 'sig' };
const signingKey = await importJWK(jwk, 'RS256');

const claimsOf = (sub) => {
  const { _id_token, ...claims } = accounts()[sub] || {};
  return { sub, ...claims };
};

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [jwk] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  scopes: ['openid', 'email', 'groups'],
  // Put the claims in the ID token itself, as Okta and Entra do when configured for it.
  conformIdTokenClaims: false,
  findAccount: async (ctx, sub) =>
    accounts()[sub] && { accountId: sub, claims: async () => claimsOf(sub) },
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  cookies: { keys: ['defendable-test-provider'] },
});

provider.use(async (ctx, next) => {
  await next();
  if (ctx.path !== '/token' || !ctx.body || !ctx.body.id_token) return;
  const claims = decodeJwt(ctx.body.id_token);
  const tamper = (accounts()[claims.sub] || {})._id_token;
  if (!tamper) return;
  const changed = { ...claims, ...(tamper.claims || {}) };
  if (tamper.expired_secs_ago) {
    changed.exp = Math.floor(Date.now() / 1000) - tamper.expired_secs_ago;
    changed.iat = changed.exp - 3600;
  }
  const idToken = await new SignJWT(changed)
    .setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ: 'JWT' })
    .sign(signingKey);
  ctx.body = { ...ctx.body, id_token: idToken };
});

server.on('request', provider.callback());
console.log(`listening on port ${port}`);
