import { createHash } from 'node:crypto';
import { fromMinorUnits } from '../amounts';
import { ConfigError, type ConfigIssue } from '../errors';
import type { PaymentOutcome } from '../orders';
import { defaultAcknowledgement } from './acknowledgement';
import { joinEventKey, sameBytes, stringList } from './common';
import { decodeForm, decoderFor, parseFormBytes } from './form';
import type { Acknowledgement, GatewayAdapter, GatewayRequest, ProcessingResult, VerificationResult } from './gateway';

export type NexiMacAlgorithm = 'sha1' | 'sha256';

export interface NexiXPayGatewayOptions {
  /** The terminal's MAC key ("Chiave segreta per calcolo MAC", back office). Several verify (rotation). */
  macKey: string | string[];
  /** The MAC algorithm Nexi uses for this terminal: `'sha1'` (XPay's classic), or `'sha256'` when Nexi enabled it. No default: a guess would reject every notification. */
  algorithm: NexiMacAlgorithm;
  /**
   * The shop's order id from the notification's fields, for shops whose `codTrans` is not
   * the order id (XPay wants a new `codTrans` per payment attempt, e.g. `IT-1001-2`).
   * Default: `codTrans` itself.
   *
   * It gets only the fields the MAC covers (`codTrans`, `esito`, `importo`, `divisa`, `data`,
   * `orario`, `codAut`, those present), decoded as UTF-8. Every other field of the form is
   * unsigned, and XPay echoes the outcome to the buyer's browser too, so anyone could add or
   * change one to pin a genuine payment on another order.
   */
  orderIdFrom?: (fields: Readonly<Record<string, string>>) => string | null | undefined;
}

/** The fields the MAC covers, in the order they are concatenated. */
const MAC_FIELDS = ['codTrans', 'esito', 'importo', 'divisa', 'data', 'orario', 'codAut'] as const;
const HEX_LENGTH: Record<NexiMacAlgorithm, number> = { sha1: 40, sha256: 64 };

const OUTCOMES: Readonly<Record<string, PaymentOutcome>> = { OK: 'paid', PEN: 'pending', KO: 'failed', ANNULLO: 'failed', ERRORE: 'failed' };

function validateOptions(options: NexiXPayGatewayOptions) {
  const issues: ConfigIssue[] = [];
  const keys = stringList(options?.macKey, (key) => key.length >= 8);
  if (!keys) {
    issues.push({ path: 'nexiXPayGateway.macKey', message: "must be the terminal's MAC key from the XPay back office (at least 8 characters), or a list of them." });
  }
  const algorithm = options?.algorithm;
  if (algorithm !== 'sha1' && algorithm !== 'sha256') {
    issues.push({ path: 'nexiXPayGateway.algorithm', message: "must be 'sha1' or 'sha256': the MAC algorithm configured for your terminal (ask Nexi when unsure; 'sha1' is XPay's classic)." });
  }
  if (options?.orderIdFrom !== undefined && typeof options.orderIdFrom !== 'function') {
    issues.push({ path: 'nexiXPayGateway.orderIdFrom', message: 'must be a function (fields) => orderId.' });
  }
  if (issues.length) throw new ConfigError(issues);
  return { keys: keys!.map((key) => Buffer.from(key, 'utf8')), algorithm: algorithm as NexiMacAlgorithm, orderIdFrom: options.orderIdFrom };
}

/**
 * The MAC of an XPay notification: hex hash of
 * `codTrans=…esito=…importo=…divisa=…data=…orario=…codAut=…` followed by the key, as
 * Nexi's own samples compute it. Exported for tests and gateway stand-ins.
 */
export function computeNexiMac(fields: Readonly<Record<string, string | Buffer | undefined>>, macKey: string | Buffer, algorithm: NexiMacAlgorithm): string {
  const hash = createHash(algorithm);
  for (const name of MAC_FIELDS) hash.update(`${name}=`).update(fields[name] ?? '');
  return hash.update(macKey).digest('hex');
}

/**
 * Nexi XPay "pagamento semplice" server-to-server notification (`urlpost`): a form POST
 * whose `mac` covers the outcome and the amount. `importo` is in minor units (cents for EUR).
 */
export function nexiXPayGateway(options: NexiXPayGatewayOptions): GatewayAdapter {
  const { keys, algorithm, orderIdFrom } = validateOptions(options);

  function verifyAndParse(request: GatewayRequest): VerificationResult {
    const unauthentic = (reason: string): VerificationResult => ({ ok: false, kind: 'unauthentic', reason });
    const malformed = (reason: string): VerificationResult => ({ ok: false, kind: 'malformed', reason });
    const form = parseFormBytes(request.rawBody);
    // A field given twice leaves it open which value the MAC was computed over.
    for (const name of [...MAC_FIELDS, 'mac']) {
      if ((form.get(name)?.length ?? 0) > 1) return unauthentic(`field ${name} is given more than once`);
    }
    const mac = form.get('mac')?.[0]?.toString('latin1') ?? '';
    if (!new RegExp(`^[0-9a-fA-F]{${HEX_LENGTH[algorithm]}}$`).test(mac)) {
      return unauthentic(`missing mac, or not a hex ${algorithm.toUpperCase()} (is algorithm '${algorithm}' the one configured for the terminal?)`);
    }
    // The MAC is over the bytes the fields stand for, whatever their charset, as Nexi's PHP sample does.
    const macFields = Object.fromEntries(MAC_FIELDS.map((name) => [name, form.get(name)?.[0]]));
    const given = Buffer.from(mac, 'hex');
    if (!keys.some((key) => sameBytes(Buffer.from(computeNexiMac(macFields, key, algorithm), 'hex'), given))) {
      return unauthentic('mac does not match the notification and a configured MAC key');
    }

    const decoder = decoderFor('utf-8')!;
    let text: Map<string, string[]>;
    try {
      text = decodeForm(form, decoder);
    } catch {
      return malformed('fields are not UTF-8');
    }
    const fields: Record<string, string> = {};
    for (const [name, values] of text) fields[name] = values[0] ?? '';
    const { codTrans = '', esito = '', importo = '', divisa = '', data = '', orario = '' } = fields;
    const outcome = OUTCOMES[esito.toUpperCase()];
    if (!outcome) return malformed(`esito '${esito}' is not one of ${Object.keys(OUTCOMES).join(', ')}`);
    if (codTrans.length === 0) return malformed('codTrans is empty');
    if (!/^[A-Za-z]{3}$/.test(divisa)) return malformed(`divisa '${divisa}' is not an ISO 4217 code like EUR`);
    const amount = fromMinorUnits(importo, divisa);
    if (amount === null) return malformed(`importo '${importo}' is not an amount in minor units (cents)`);
    let orderId: string | null | undefined = codTrans;
    if (orderIdFrom) {
      // Only what the MAC vouches for: an unsigned field could be forged to redirect the payment.
      const signed: Record<string, string> = {};
      for (const name of MAC_FIELDS) if (fields[name] !== undefined) signed[name] = fields[name];
      try {
        orderId = orderIdFrom(signed);
      } catch (error) {
        return malformed(`orderIdFrom threw: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    if (typeof orderId !== 'string' || orderId.length === 0) return { ok: true, events: [] };
    return {
      ok: true,
      events: [
        {
          // A redelivery repeats all four parts; a later state of the same codTrans differs in esito or time.
          eventKey: joinEventKey(codTrans, esito.toUpperCase(), data, orario),
          orderId,
          outcome,
          ...(outcome === 'paid' && { amount }),
          currency: divisa.toUpperCase(),
          transactionId: codTrans,
        },
      ],
    };
  }

  function acknowledge(result: ProcessingResult): Acknowledgement {
    // XPay only looks at the status; a short body keeps its logs readable.
    return result.ok ? { status: 200, contentType: 'text/plain', body: 'OK' } : defaultAcknowledgement(result);
  }

  return { verifyAndParse, acknowledge };
}
