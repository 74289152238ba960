/**
 * The network guard: the first `onRequest` hook, so it runs before authentication and before any
 * route. It resolves the client address (client-address.ts), records it for everything after it
 * (`clientAddressOf`), and asks the policy whether the listener the request came in on may serve
 * that address. A refusal is 403 `DENIED` naming the rule, and a `network.denied` audit event with
 * the client address.
 */
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { EventBus } from '../audit/index.js';
import type { Config } from '../config/index.js';
import { setClientAddress } from '../http/index.js';
import { registryError } from '../oci/index.js';
import { AddressSet, parseCidr, type Cidr } from './address.js';
import { clientAddress } from './client-address.js';
import { NetworkPolicy, parseRule, type ListenerKind } from './policy.js';

/** The kind of each socket accepted by an extra listener (listeners.ts); the main listener's are `network.listenKind`. */
const socketKinds = new WeakMap<Socket, ListenerKind>();

export function markSocket(socket: Socket, kind: ListenerKind): void {
  socketKinds.set(socket, kind);
}

export function installNetworkGuard(app: FastifyInstance, config: Config, bus: EventBus): NetworkPolicy {
  const n = config.network;
  const policy = new NetworkPolicy({ publicAccess: n.publicAccess, defaultAction: n.defaultAction, rules: n.rules.map(parseRule) });
  const trusted = new AddressSet(n.trustedProxies.map((t) => parseCidr(t) as Cidr));
  app.addHook('onRequest', (req, _reply, done) => {
    const socket = req.raw.socket;
    const kind = socketKinds.get(socket) ?? n.listenKind;
    const client = clientAddress(socket.remoteAddress, req.headers, trusted, n.forwardedHeader);
    const address = client.address ?? client.raw;
    setClientAddress(req.raw, address);
    const verdict = policy.decide(kind, client.address);
    if (verdict.allowed) {
      done();
      return;
    }
    const ua = req.headers['user-agent'];
    bus.emit({
      type: 'network.denied',
      time: new Date().toISOString(),
      repository: '',
      client: { address, userAgent: typeof ua === 'string' ? ua.slice(0, 512) : '', requestId: req.id },
      outcome: 'failure',
      error: 'DENIED',
      target: `${kind} listener ${socket.localAddress ?? ''}:${socket.localPort ?? ''}`,
      reason: `network ${verdict.rule}`,
    });
    done(registryError('DENIED', `access from ${address} is denied by network ${verdict.rule}`, { detail: { rule: verdict.rule, address } }));
  });
  return policy;
}
