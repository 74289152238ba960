/**
 * The admin CLI's HTTP client. It authenticates like any other client: an access token from
 * `/oauth2/token` (password grant with the username and password, or the refresh_token grant),
 * asking for the `registry:admin:*` scope the command needs, then calls `/api/v1` with it.
 *
 * Credentials, first found wins: `--username` (or BULWARK_USERNAME) with the password from
 * `--password-stdin` or BULWARK_PASSWORD; BULWARK_REFRESH_TOKEN; the refresh token `bulwark login`
 * stored for this registry. Never a command-line argument, which other users of the machine can
 * read in the process list; never plain http except to this machine.
 */
import type { Command } from 'commander';
import { storedRefreshToken } from './login.js';

export interface ClientFlags {
  readonly registry?: string;
  readonly username?: string;
  readonly passwordStdin?: boolean;
  readonly json?: boolean;
}

/** A failure to report in one line (exit code 1), never with a stack trace. */
export class CliError extends Error {
  override readonly name = 'CliError';
}

const DEFAULT_REGISTRY = 'http://127.0.0.1:5000';
const TIMEOUT_MS = 30_000;

/** The flags every admin command takes. */
export function addClientFlags(cmd: Command): Command {
  return cmd
    .option('--registry <url>', `registry URL (BULWARK_REGISTRY; default ${DEFAULT_REGISTRY})`)
    .option('--username <name>', 'sign in as this identity (BULWARK_USERNAME)')
    .option('--password-stdin', 'read the password from standard input (else BULWARK_PASSWORD)')
    .option('--json', 'print JSON (for scripts)');
}

export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

function registryUrl(flag: string | undefined): string {
  const raw = flag ?? process.env.BULWARK_REGISTRY ?? DEFAULT_REGISTRY;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new CliError(`invalid registry URL ${raw}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CliError(`invalid registry URL ${raw}: expected http(s)://host[:port]`);
  // credentials in clear text only where nobody can be in between
  if (u.protocol === 'http:' && !['127.0.0.1', '[::1]', 'localhost'].includes(u.hostname)) throw new CliError(`refusing to send credentials over plain http to ${u.host}: use https`);
  return u.origin;
}

const nonEmpty = (s: string | undefined): string | undefined => (s === undefined || s === '' ? undefined : s);

/** The first message of an OCI error envelope, or the HTTP status. */
async function errorOf(res: Response): Promise<string> {
  const text = await res.text().catch(() => '');
  try {
    const doc = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    const e = doc.errors?.[0];
    if (e?.message !== undefined) return `${e.message} (${e.code ?? res.status})`;
  } catch {
    // not our envelope: a proxy or another server answered
  }
  return `HTTP ${res.status}`;
}

async function send(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: AbortSignal.timeout(TIMEOUT_MS), redirect: 'error' });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new CliError(`cannot reach ${new URL(url).origin}: ${cause?.code ?? cause?.message ?? (e as Error).message}`);
  }
}

export class AdminClient {
  private constructor(
    private readonly base: string,
    private readonly token: string,
  ) {}

  /** Sign in and get an access token with `registry:admin:<action>` for each action given. */
  static async connect(flags: ClientFlags, actions: readonly ('read' | 'write' | 'access')[]): Promise<AdminClient> {
    const base = registryUrl(flags.registry);
    const form = new URLSearchParams();
    if (actions.length > 0) form.set('scope', `registry:admin:${actions.join(',')}`);
    const username = flags.username ?? process.env.BULWARK_USERNAME;
    const refresh = nonEmpty(process.env.BULWARK_REFRESH_TOKEN) ?? storedRefreshToken(base);
    if (username !== undefined && username !== '') {
      const password = flags.passwordStdin === true ? await readStdin() : process.env.BULWARK_PASSWORD;
      if (password === undefined || password === '') throw new CliError('no password: pipe it to --password-stdin or set BULWARK_PASSWORD');
      form.set('grant_type', 'password');
      form.set('username', username);
      form.set('password', password);
    } else if (refresh !== undefined) {
      form.set('grant_type', 'refresh_token');
      form.set('refresh_token', refresh);
    } else {
      throw new CliError('no credentials: `bulwark login`, or set BULWARK_USERNAME and BULWARK_PASSWORD (or use --username with --password-stdin), or BULWARK_REFRESH_TOKEN');
    }
    const res = await send(`${base}/oauth2/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() });
    if (!res.ok) throw new CliError(`sign-in failed: ${await errorOf(res)}`);
    const doc = (await res.json()) as { access_token?: unknown };
    if (typeof doc.access_token !== 'string') throw new CliError('sign-in failed: the token endpoint returned no access token');
    return new AdminClient(base, doc.access_token);
  }

  /** Call `/api/v1<path>`; the parsed JSON answer, undefined for 204. */
  async call<T = unknown>(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}`, accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await send(`${this.base}/api/v1${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    if (!res.ok) throw new CliError(await errorOf(res));
    if (res.status === 204) return undefined as T;
    return (await res.json()) as T;
  }
}

/** A path segment from user input. */
export const seg = (s: string): string => encodeURIComponent(s);
