/** Types the shop implements or hands us: its orders and what gateways tell about them. */

export interface OrderItem {
  /** Product code (SKU). Required by Matomo. */
  sku: string;
  name?: string;
  /** One category, or up to five (Matomo keeps five levels). */
  category?: string | string[];
  /** Unit price in major units (12.5 = €12.50). */
  price: number;
  /** Whole number of units. */
  quantity: number;
}

/** An order as the shop stores it. Amounts are in major units (12.5 = €12.50). */
export interface Order {
  /** The order id the shop shows the buyer; sent to Matomo as `ec_id` (≤ 100 characters). */
  id: string;
  /** Grand total the buyer pays; compared with the amount the gateway confirms. */
  revenue: number;
  subtotal?: number;
  tax?: number;
  shipping?: number;
  discount?: number;
  /** ISO 4217 code; when set, a payment in another currency is not a payment. */
  currency?: string;
  /** The shop's customer id; sent as Matomo User ID only with `useUserId` and consent. */
  userId?: string;
  createdAt?: Date;
  items: OrderItem[];
}

export type PaymentOutcome = 'paid' | 'pending' | 'failed' | 'canceled';

/** What a gateway adapter extracts from one verified notification. */
export interface PaymentEvent {
  /** Key of `gateways` the notification came in on. */
  gateway: string;
  /**
   * Identifies this notification, including its status, so that a redelivery is
   * recognised but a legitimate transition (pending → paid) is not.
   */
  eventKey: string;
  orderId: string;
  outcome: PaymentOutcome;
  /** Amount confirmed, in major units, as a decimal string ("12.50") or a number. */
  amount?: string | number;
  currency?: string;
  transactionId?: string;
  occurredAt?: Date;
  /** Set by us when a paid event is not accepted as a payment (amount or currency mismatch). */
  rejectionReason?: string;
}

/** Implemented by the shop: how we read orders and record what gateways confirm. */
export interface OrderRepository {
  getOrder(orderId: string): Promise<Order | null>;
  /**
   * Called once per order when a verified payment matches it: the shop inserts the
   * document into its ERP here. We call it exactly once per order in normal operation;
   * after a crash in the middle of it the gateway's retry calls it again, so it must
   * be idempotent.
   */
  markPaid(orderId: string, payment: PaymentEvent): Promise<void>;
  /**
   * Called when a verified notification says the payment failed or was canceled, or
   * when a "paid" notification does not match the order (then `payment.rejectionReason`
   * says why). `null` when no usable notification exists.
   */
  markPaymentUnconfirmed(orderId: string, payment: PaymentEvent | null): Promise<void>;
}
