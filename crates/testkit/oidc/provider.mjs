// A real OpenID Provider for the SSO tests: the npm `oidc-provider` package (pinned, installed
// under target/tools/ by `cargo xtask test`), configured from the environment by
// crates/testkit/src/oidc.rs. Accounts sign in through its development login form (any
// password); their claims come from OIDC_ACCOUNTS.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = process.env.ISSUER;
const accounts = JSON.parse(process.env.OIDC_ACCOUNTS);
const clients = JSON.parse(process.env.OIDC_CLIENTS);

const provider = new Provider(issuer, {
  clients,
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  scopes: ['openid', 'email', 'groups'],
  // Put the claims in the ID token itself, as Okta and Entra do when configured for it.
  conformIdTokenClaims: false,
  findAccount: async (ctx, sub) =>
    accounts[sub] && { accountId: sub, claims: async () => ({ sub, ...accounts[sub] }) },
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  cookies: { keys: ['defendable-test-provider'] },
  ttl: { IdToken: Number(process.env.ID_TOKEN_TTL || 3600) },
});
provider.listen(port, '127.0.0.1', () => console.log(`listening ${issuer}`));
