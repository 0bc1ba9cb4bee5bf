/**
 * Sends the email outbox (src/store/outbox.ts) over SMTP with nodemailer, when the operator gave
 * `--smtp-url` and `--smtp-from` (docs/feedback.md, "Telling the author"). A change that causes
 * an email only writes it to the outbox and kicks the sender: the request never waits for SMTP.
 * The outbox is also read every pollMs, so emails of other nodes and failed tries are sent too;
 * a failed try is retried later, at most MAX_ATTEMPTS times.
 */
import nodemailer from "nodemailer";
import type { Transporter } from "nodemailer";
import type { Store } from "../store/store.ts";
import { type PendingEmail, claimEmail, dueEmails, markEmailFailed, markEmailSent } from "../store/outbox.ts";

export interface MailSettings {
  /** smtp:// or smtps:// URL, credentials in it if the server wants them (smtps://user:pass@host:465). */
  url: string;
  /** The From address. */
  from: string;
  /** How often the outbox is read besides the kicks (ms, default 5000). */
  pollMs?: number;
}

const MAX_ATTEMPTS = 8;
/** An email claimed by a sender that died is tried again after this. */
const CLAIM_MS = 2 * 60_000;
const BATCH = 20;
/** Waits before the next try: 1 min, 2 min, 4 min, … at most an hour. */
const retryDelay = (attempts: number) => Math.min(60_000 * 2 ** Math.max(0, attempts - 1), 60 * 60_000);

export class OutboxSender {
  readonly #store: Store;
  readonly #transport: Transporter;
  readonly #from: string;
  readonly #now: () => number;
  readonly #onError: (error: Error) => void;
  readonly #timer: NodeJS.Timeout;
  #running: Promise<void> | undefined;
  #again = false;
  #closed = false;

  constructor(store: Store, settings: MailSettings, now: () => number, onError: (error: Error) => void) {
    this.#store = store;
    this.#transport = nodemailer.createTransport(settings.url);
    this.#from = settings.from;
    this.#now = now;
    this.#onError = onError;
    this.#timer = setInterval(() => this.kick(), settings.pollMs ?? 5_000).unref();
  }

  /** Sends what is due, soon; kicks while a round runs start one more after it. */
  kick(): void {
    if (this.#closed) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = this.#round()
      .catch((e: Error) => this.#onError(e))
      .finally(() => {
        this.#running = undefined;
        if (this.#again) {
          this.#again = false;
          this.kick();
        }
      });
  }

  async #round(): Promise<void> {
    let due;
    do {
      due = await dueEmails(this.#store, this.#now(), MAX_ATTEMPTS, BATCH);
      for (const email of due) await this.#send(email);
    } while (due.length === BATCH && !this.#closed);
  }

  async #send(email: PendingEmail): Promise<void> {
    if (this.#closed) return;
    if (!(await claimEmail(this.#store, email, this.#now() + CLAIM_MS))) return;
    try {
      await this.#transport.sendMail({ from: this.#from, to: email.to, subject: email.subject, text: email.body });
      await markEmailSent(this.#store, email.id, this.#now());
    } catch (e) {
      const error = e instanceof Error ? e : new Error(String(e));
      await markEmailFailed(this.#store, email.id, error.message, this.#now() + retryDelay(email.attempts + 1));
      this.#onError(new Error(`email ${email.id} to ${email.to} not sent (try ${email.attempts + 1} of ${MAX_ATTEMPTS}): ${error.message}`));
    }
  }

  /** Stops reading the outbox, lets the round under way finish, and closes the SMTP connections. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#running;
    this.#transport.close();
  }
}
