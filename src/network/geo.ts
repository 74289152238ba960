/**
 * Country of a client address (the gateway's geo rules, ADR 0012), from a MaxMind GeoLite2/GeoIP2
 * Country (or City) database file, read with the `maxmind` package: no look-up ever leaves the
 * machine. The file is polled, and a changed file (the weekly geoipupdate) replaces the one in
 * use only when it opens as a database; a broken download is logged and the old data kept.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { Reader, type CountryResponse } from 'maxmind';

/** ISO 3166 has no code for "not in the database"; Azure's WAF and MaxMind's docs use ZZ. */
export const UNKNOWN_COUNTRY = 'ZZ';

interface Log {
  info(o: object, m: string): void;
  error(o: object, m: string): void;
}

function open(file: string, bytes: Buffer): Reader<CountryResponse> {
  try {
    return new Reader<CountryResponse>(bytes);
  } catch (e) {
    throw new Error(`${file} is not a MaxMind DB file: ${(e as Error).message}`, { cause: e });
  }
}

const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

export class GeoDatabase {
  private reader: Reader<CountryResponse>;
  private current: string;
  private readonly timer: NodeJS.Timeout;
  private checking = false;

  /** Opens the file now (a start with a missing or broken database fails), then polls it. */
  constructor(
    private readonly file: string,
    reloadCheckSeconds: number,
    private readonly log: Log,
  ) {
    const bytes = readFileSync(file);
    this.reader = open(file, bytes);
    this.current = digest(bytes);
    this.timer = setInterval(() => void this.check(), reloadCheckSeconds * 1000);
    this.timer.unref();
  }

  /** Two-letter country code, or ZZ when the address is in no network of the database. */
  country(address: string): string {
    let found: CountryResponse | null;
    try {
      found = this.reader.get(address);
    } catch {
      return UNKNOWN_COUNTRY;
    }
    return found?.country?.iso_code ?? found?.registered_country?.iso_code ?? UNKNOWN_COUNTRY;
  }

  async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      const bytes = await readFile(this.file);
      const d = digest(bytes);
      if (d === this.current) return;
      this.reader = open(this.file, bytes);
      this.current = d;
      this.log.info({ file: this.file, build: this.reader.metadata.buildEpoch }, 'reloaded the geo database');
    } catch (err) {
      this.log.error({ err, file: this.file }, 'failed to reload the geo database; keeping the one in use');
    } finally {
      this.checking = false;
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}
