// The peer Countersign's intake is measured against (issue 15): node `oidc-provider` (pinned in
// package.json) as an OpenID CIBA server, poll delivery mode, one confidential client.
//
//   NODE_ENV=production node ciba.mjs [port]     (or PEER_PORT=…; default 4000)
//
// Plain HTTP on 127.0.0.1. Prints `ciba peer ready on http://127.0.0.1:<port> …` once it
// listens. The client's id and secret come from PEER_CLIENT_ID / PEER_CLIENT_SECRET (defaults
// `bench-client` / `bench-secret`); it authenticates with client_secret_basic or
// client_secret_post.
//
// What it does per POST /backchannel is what a real deployment would do, minus the parts a
// deployment adds on top: any login_hint names an account (no user lookup), the binding message,
// request context and user code are accepted as they are, and the authentication device is not
// contacted. The pending requests live in a plain Map that never evicts: oidc-provider's own
// development adapter is an LRU of 1,000 entries, which would drop pending requests under load
// (and make the peer cheaper than a real store).
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.argv[2] ?? process.env.PEER_PORT ?? 4000);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`not a port: ${process.argv[2] ?? process.env.PEER_PORT}`);
  process.exit(2);
}
const clientId = process.env.PEER_CLIENT_ID ?? 'bench-client';
const clientSecret = process.env.PEER_CLIENT_SECRET ?? 'bench-secret';

// Every model's records, by model name and id; nothing is ever evicted (expired records stay,
// as they would in a store whose expiry runs elsewhere; oidc-provider checks `exp` itself on
// every find). Secondary indexes as the adapter interface needs them.
const records = new Map();
const byUid = new Map();
const byUserCode = new Map();
const byGrant = new Map();

class NeverEvictingAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, _expiresIn) {
    const key = this.key(id);
    records.set(key, payload);
    if (payload.uid !== undefined) byUid.set(payload.uid, id);
    if (payload.userCode !== undefined) byUserCode.set(payload.userCode, id);
    if (payload.grantId !== undefined) {
      let members = byGrant.get(payload.grantId);
      if (members === undefined) {
        members = new Set();
        byGrant.set(payload.grantId, members);
      }
      members.add(key);
    }
  }

  async find(id) {
    return records.get(this.key(id));
  }

  async findByUid(uid) {
    const id = byUid.get(uid);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = byUserCode.get(userCode);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const payload = records.get(this.key(id));
    if (payload !== undefined) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    const key = this.key(id);
    const payload = records.get(key);
    records.delete(key);
    if (payload?.grantId !== undefined) byGrant.get(payload.grantId)?.delete(key);
  }

  async revokeByGrantId(grantId) {
    for (const key of byGrant.get(grantId) ?? []) records.delete(key);
    byGrant.delete(grantId);
  }
}

// A signing key of our own for ID tokens (the built-in one is a development key, and warns).
const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 })
  .privateKey.export({ format: 'jwk' });

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  adapter: NeverEvictingAdapter,
  jwks: { keys: [{ ...signingKey, kid: 'bench', use: 'sig', alg: 'RS256' }] },
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    grant_types: ['urn:openid:params:grant-type:ciba'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    backchannel_token_delivery_mode: 'poll',
  }],
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  // Every login_hint is an account of its own; no claims beyond `sub`.
  async findAccount(_ctx, sub) {
    return { accountId: sub, claims: () => ({ sub }) };
  },
  cookies: { keys: ['bench-cookie-key-not-used-by-ciba'] },
  // Ten minutes, or less if the client asks (the default's value, stated so it doesn't warn).
  ttl: {
    BackchannelAuthenticationRequest(ctx) {
      const asked = Number(ctx?.oidc?.params.requested_expiry);
      return asked > 0 ? Math.min(asked, 600) : 600;
    },
  },
  features: {
    devInteractions: { enabled: false },
    ciba: {
      enabled: true,
      deliveryModes: ['poll'],
      processLoginHint: async (_ctx, loginHint) => loginHint,
      processLoginHintToken: async () => undefined,
      validateBindingMessage: async () => {},
      validateRequestContext: async () => {},
      verifyUserCode: async () => {},
      triggerAuthenticationDevice: async () => {},
    },
  },
});

// Errors the client caused (400, 401) are answers, not failures worth a line each under load.
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

const server = createServer(provider.callback());
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.listen(port, '127.0.0.1', () => {
  console.log(`ciba peer ready on ${issuer} (oidc-provider, client ${clientId}, pid ${process.pid})`);
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
