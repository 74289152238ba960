/**
 * The network guard: the first `onRequest` hook, so it runs before authentication and before any
 * route. It resolves the client address (client-address.ts), records it for everything after it
 * (`clientAddressOf`), and asks the policy whether the listener the request came in on may serve
 * that address. A refusal is 403 `DENIED` naming the rule (the connection is closed: its body is
 * not read), and a `network.denied` audit event with the client address. Audit events are bounded
 * per address (`DeniedEvents`): an internet client hammering a public listener must not grow the
 * audit log without limit.
 */
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { EventBus } from '../audit/index.js';
import type { Config } from '../config/index.js';
import { answerClientError, setClientAddress } from '../http/index.js';
import { registryError } from '../oci/index.js';
import { AddressSet, parseCidr, type Cidr } from './address.js';
import { clientAddress } from './client-address.js';
import { NetworkPolicy, parseRule, type ListenerKind } from './policy.js';

/** Refusals of one address audited per window; the rest are counted into the next event. */
const EVENTS_PER_WINDOW = 10;
const WINDOW_MS = 60_000;
/** Addresses tracked at once; past this the oldest window is forgotten (its count is lost, not its events). */
const MAX_TRACKED = 10_000;

/** Per client address: at most EVENTS_PER_WINDOW refusal events a minute, then a count of the rest. */
export class DeniedEvents {
  private readonly windows = new Map<string, { start: number; logged: number; suppressed: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Whether to emit an event for this refusal, and how many were not emitted before it. */
  admit(address: string): { emit: boolean; suppressed: number } {
    const t = this.now();
    let w = this.windows.get(address);
    if (w !== undefined && t - w.start >= WINDOW_MS) {
      const suppressed = w.suppressed;
      this.windows.delete(address);
      w = undefined;
      if (suppressed > 0) {
        this.track(address, { start: t, logged: 1, suppressed: 0 });
        return { emit: true, suppressed };
      }
    }
    if (w === undefined) {
      this.track(address, { start: t, logged: 1, suppressed: 0 });
      return { emit: true, suppressed: 0 };
    }
    if (w.logged < EVENTS_PER_WINDOW) {
      w.logged++;
      return { emit: true, suppressed: 0 };
    }
    w.suppressed++;
    return { emit: false, suppressed: 0 };
  }

  private track(address: string, w: { start: number; logged: number; suppressed: number }): void {
    if (this.windows.size >= MAX_TRACKED) {
      const oldest = this.windows.keys().next();
      if (oldest.done !== true) this.windows.delete(oldest.value);
    }
    this.windows.set(address, w);
  }
}

/** The kind of each socket accepted by an extra listener (listeners.ts); the main listener's are `network.listenKind`. */
const socketKinds = new WeakMap<Socket, ListenerKind>();

export function markSocket(socket: Socket, kind: ListenerKind): void {
  socketKinds.set(socket, kind);
}

/**
 * `kind`: the kind of the sockets no extra listener marked (fastify's own server's): by default
 * `network.listenKind`, the data endpoint's kind for the data endpoint.
 */
export function installNetworkGuard(app: FastifyInstance, config: Config, bus: EventBus, kind: ListenerKind = config.network.listenKind): NetworkPolicy {
  const n = config.network;
  const policy = new NetworkPolicy({ publicAccess: n.publicAccess, defaultAction: n.defaultAction, rules: n.rules.map(parseRule) });
  const trusted = new AddressSet(n.trustedProxies.map((t) => parseCidr(t) as Cidr));
  const events = new DeniedEvents();
  /** The audit event of a refusal (bounded per address), and what the client is told. */
  const refusal = (socket: Socket, listener: ListenerKind, address: string, rule: string, client: { userAgent: string; requestId: string }): string => {
    const audit = events.admit(address);
    if (audit.emit) {
      bus.emit({
        type: 'network.denied',
        time: new Date().toISOString(),
        repository: '',
        client: { address, ...client },
        outcome: 'failure',
        error: 'DENIED',
        target: `${listener} listener ${socket.localAddress ?? ''}:${socket.localPort ?? ''}`,
        reason: `network ${rule}${audit.suppressed > 0 ? ` (and ${audit.suppressed} earlier refusals of this address not logged)` : ''}`,
      });
    }
    return `access from ${address} is denied by network ${rule}`;
  };
  app.addHook('onRequest', (req, _reply, done) => {
    const socket = req.raw.socket;
    const listener = socketKinds.get(socket) ?? kind;
    const client = clientAddress(socket.remoteAddress, req.headers, trusted, n.forwardedHeader);
    const address = client.address ?? client.raw;
    setClientAddress(req.raw, address);
    const verdict = policy.decide(listener, client.address);
    if (verdict.allowed) {
      done();
      return;
    }
    const ua = req.headers['user-agent'];
    const message = refusal(socket, listener, address, verdict.rule, { userAgent: typeof ua === 'string' ? ua.slice(0, 512) : '', requestId: req.id });
    done(registryError('DENIED', message, { detail: { rule: verdict.rule, address }, headers: { connection: 'close' } }));
  });
  // A request the parser cannot read (malformed, headers too large or too slow) from an address
  // the rules refuse is refused like any other: 403 DENIED naming the rule, before the parser's
  // 400 (http/error-handler.ts) could tell it anything. Only the peer is known then, no header can
  // be believed: a trusted proxy's unreadable request keeps its 400.
  app.server.prependListener('clientError', (err: Error & { code?: string }, socket: Socket) => {
    const listener = socketKinds.get(socket) ?? kind;
    const peer = clientAddress(socket.remoteAddress, {}, trusted, n.forwardedHeader).address;
    if (peer === undefined || trusted.has(peer)) return;
    const verdict = policy.decide(listener, peer);
    if (verdict.allowed || err.code === 'ECONNRESET' || socket.destroyed) return;
    answerClientError(err, socket, 'DENIED', refusal(socket, listener, peer, verdict.rule, { userAgent: '', requestId: '' }));
  });
  return policy;
}
